"""What a locustfile saw beyond Locust's own statistics, and its JSON form (the runner reads it back).

The locustfile writes this at `test_stop`; the runner reads it after Locust exits and merges it
with Locust's CSV statistics into the summary. JSON keeps the two processes loosely coupled: a
locustfile run by hand (`locust -f ... --turnout-stats out.json`) produces the same file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from loadtests.bursts import BurstReport
from loadtests.ledger import LedgerReport

UnitPolicy = Literal["sticky", "monotone"]


@dataclass(frozen=True, slots=True)
class TrafficReport:
    scenario: str
    unit_policy: UnitPolicy | None
    """Which promise the ledger checks: sticky arms (A/B), monotone ramp (canary), or none."""
    forward_arm: str | None
    """The arm a monotone ramp moves units into (the canary's candidate)."""
    requests: int
    span_s: float
    """From the first request's start to the last answer: the time the counts below cover."""
    statuses: dict[str, int]
    """HTTP status (or gRPC code name) -> answers; "none" for requests that got no answer."""
    arms: dict[str, int]
    """Arm (x-turnout-arm) -> answers carrying it."""
    ledger: LedgerReport
    cache: dict[str, int]
    """x-turnout-cache value (hit, miss, coalesced, bypass) -> answers carrying it."""
    rate_limited: int
    """429 answers, marked successful in Locust's statistics since they are expected."""
    rate_limited_without_retry_after: int
    """429 answers that lacked Retry-After (a broken promise of the rate limiter)."""
    arm_timeline: tuple[tuple[int, dict[str, int]], ...]
    """(whole seconds since the first request, answers per arm in that second), in order."""
    bursts: BurstReport | None

    @property
    def sticky_violations(self) -> int:
        return self.ledger.mixed_units

    @property
    def answered_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if status.startswith("2"))

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_json())

    @classmethod
    def from_json(cls, data: bytes) -> TrafficReport:
        raw: dict[str, Any] = orjson.loads(data)
        ledger = raw["ledger"]
        bursts = raw["bursts"]
        return cls(
            scenario=raw["scenario"],
            unit_policy=raw["unit_policy"],
            forward_arm=raw["forward_arm"],
            requests=raw["requests"],
            span_s=raw["span_s"],
            statuses=raw["statuses"],
            arms=raw["arms"],
            ledger=LedgerReport(
                units=ledger["units"],
                revisited_units=ledger["revisited_units"],
                units_by_first_arm=ledger["units_by_first_arm"],
                mixed_units=ledger["mixed_units"],
                reversed_units=ledger["reversed_units"],
                mixed_examples=tuple(ledger["mixed_examples"]),
                reversed_examples=tuple(ledger["reversed_examples"]),
            ),
            cache=raw["cache"],
            rate_limited=raw["rate_limited"],
            rate_limited_without_retry_after=raw["rate_limited_without_retry_after"],
            arm_timeline=tuple((int(second), dict(arms)) for second, arms in raw["arm_timeline"]),
            bursts=BurstReport(**bursts) if bursts is not None else None,
        )

    @classmethod
    def read(cls, path: Path) -> TrafficReport:
        return cls.from_json(path.read_bytes())

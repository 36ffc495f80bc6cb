"""A Locust `request` event listener that reads what the gateway said about each answer.

It looks at the headers turnout adds (experiment arm, cache outcome, rate-limit state) and at the
context a user attached to the request (the unit id it sent, the burst it belongs to), and keeps
counts only: a few dict updates per request, so it does not slow the load generator. It imports
nothing from Locust; it is handed each event's keyword arguments and duck-types the response
(`status_code`, `headers.get`), so it is tested without gevent.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from loadtests.bursts import BurstTracker
from loadtests.ledger import UnitLedger
from loadtests.traffic_report import TrafficReport, UnitPolicy

ARM_HEADER = "x-turnout-arm"
CACHE_HEADER = "x-turnout-cache"
RETRY_AFTER_HEADER = "retry-after"
TOO_MANY_REQUESTS = 429
# Context keys a user sets on a request (Locust's `context=` argument).
UNIT_KEY = "unit"
BURST_KEY = "burst"
BURST_SIZE_KEY = "burst_size"
STATUS_KEY = "status"
"""Set by users of non-HTTP protocols (gRPC) to the outcome's name, since they have no status code."""
NO_ANSWER = "none"


class TrafficObserver:
    """Counts statuses, arms, cache outcomes and bursts; checks each unit's arms in a `UnitLedger`."""

    __slots__ = (
        "_arms",
        "_bursts",
        "_cache",
        "_first_start",
        "_forward_arm",
        "_last_end",
        "_ledger",
        "_limited",
        "_limited_bare",
        "_requests",
        "_scenario",
        "_statuses",
        "_timeline",
        "_unit_policy",
    )

    def __init__(self, scenario: str, unit_policy: UnitPolicy | None, forward_arm: str | None = None) -> None:
        self._scenario = scenario
        self._unit_policy = unit_policy
        self._forward_arm = forward_arm
        self._ledger = UnitLedger(forward_arm if unit_policy == "monotone" else None)
        self._bursts = BurstTracker()
        self._statuses: Counter[str] = Counter()
        self._arms: Counter[str] = Counter()
        self._cache: Counter[str] = Counter()
        self._timeline: dict[int, Counter[str]] = {}
        self._requests = 0
        self._limited = 0
        self._limited_bare = 0
        self._first_start: float | None = None
        self._last_end = 0.0

    def on_request(
        self,
        *,
        response: Any,
        context: dict[str, Any] | None,
        start_time: float,
        response_time: float,
        **_: Any,
    ) -> None:
        """Locust's request event: `start_time` in epoch seconds, `response_time` in milliseconds."""
        context = context or {}
        self._requests += 1
        if self._first_start is None or start_time < self._first_start:
            self._first_start = start_time
        ended_at = start_time + response_time / 1000.0
        self._last_end = max(self._last_end, ended_at)
        burst = context.get(BURST_KEY)
        if burst is not None:
            self._bursts.member_done(str(burst), int(context[BURST_SIZE_KEY]), start_time, ended_at)
        status = context.get(STATUS_KEY) or getattr(response, "status_code", None) or NO_ANSWER
        self._statuses[str(status)] += 1
        headers = getattr(response, "headers", None)
        if headers is None:
            return
        if status == TOO_MANY_REQUESTS:
            self._limited += 1
            if headers.get(RETRY_AFTER_HEADER) is None:
                self._limited_bare += 1
        cache = headers.get(CACHE_HEADER)
        if cache is not None:
            self._cache[cache] += 1
        arm = headers.get(ARM_HEADER)
        if arm is not None:
            self._arms[arm] += 1
            # Keyed by the epoch second the request started; made relative to the first one in report().
            self._timeline.setdefault(int(start_time), Counter())[arm] += 1
            unit = context.get(UNIT_KEY)
            if unit is not None:
                self._ledger.record(str(unit), arm)

    def report(self) -> TrafficReport:
        first_start = self._first_start if self._first_start is not None else self._last_end
        first_second = int(first_start)
        bursts = self._bursts.report()
        return TrafficReport(
            scenario=self._scenario,
            unit_policy=self._unit_policy,
            forward_arm=self._forward_arm,
            requests=self._requests,
            span_s=max(self._last_end - first_start, 0.0),
            statuses=dict(sorted(self._statuses.items())),
            arms=dict(sorted(self._arms.items())),
            ledger=self._ledger.report(),
            cache=dict(sorted(self._cache.items())),
            rate_limited=self._limited,
            rate_limited_without_retry_after=self._limited_bare,
            arm_timeline=tuple(
                (second - first_second, dict(self._timeline[second])) for second in sorted(self._timeline)
            ),
            bursts=bursts if bursts.count or bursts.unfinished else None,
        )

"""The event store's contract, and the sufficient statistics it hands to analysis.

A store keeps, per (experiment, phase, arm): request-level moments per metric (count, sum, sum of
squares), a latency histogram, output label counts, and per-unit sums (units count, and for every
per-unit counter its sum, sum of squares and cross-products with its denominator) from which the
delta method gives unit-level inference. It also keeps raw events (for export), split and controller
state (compare-and-set on a revision, so replicas never go backwards), and controller decisions.
Two implementations: SQLite (one gateway) and Redis (several replicas).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from experiments.events import Decision, Event, Feedback
from experiments.finite import finite, unit_counter_of, unusable_unit_counters, usable_moments
from experiments.lease import Lease
from experiments.sketch import LogHistogram
from experiments.stats import RatioSummary, RunningMoments

if TYPE_CHECKING:  # the aggregation module builds on this one
    from experiments.store.aggregate import JoinTarget

EventKind = Literal["exposures", "outcomes", "feedback"]
EVENT_KINDS: tuple[EventKind, ...] = ("exposures", "outcomes", "feedback")

# Per-unit counters. Every outcome adds to requests, errors and latency together; a score output
# adds its sum and count together, so a counter and its denominator always change in one update.
UNIT_EXPOSURES = "exposures"
UNIT_REQUESTS = "requests"
UNIT_ERRORS = "errors"
UNIT_LATENCY = "latency"
SCORE_COUNT_SUFFIX = "#n"

# Request-level moment names.
MOMENT_LATENCY = "latency"
MOMENT_ERROR = "error"
MOMENT_BYTES = "bytes"

# Counters per (experiment, phase).
COUNTER_FORCED = "forced"
COUNTER_EXCLUDED = "excluded"
COUNTER_CROSSOVERS = "crossovers"
COUNTER_UNMATCHED_FEEDBACK = "unmatched_feedback"
# Feedback values that were not finite and were left out when a batch was aggregated.
COUNTER_NONFINITE_FEEDBACK = "nonfinite_feedback"
EXPOSURES_PREFIX = "exposures:"


def denominator_of(counter: str) -> str | None:
    """The per-unit counter a counter is divided by in its ratio metric (None: by units)."""
    if counter in (UNIT_ERRORS, UNIT_LATENCY):
        return UNIT_REQUESTS
    if counter.startswith("output:") and not counter.endswith(SCORE_COUNT_SUFFIX):
        return counter + SCORE_COUNT_SUFFIX
    return None


def metric_ratio(metric: str) -> tuple[str, str | None]:
    """(numerator, denominator) per-unit counters of a metric: error_rate is errors per request,
    latency is latency per request, feedback:X is X per unit, output:N is score per scored request."""
    if metric == "error_rate":
        return UNIT_ERRORS, UNIT_REQUESTS
    if metric == "latency":
        return UNIT_LATENCY, UNIT_REQUESTS
    if metric.startswith("feedback:"):
        return metric, None
    if metric.startswith("output:"):
        return metric, metric + SCORE_COUNT_SUFFIX
    raise ValueError(f"metric {metric!r} has no per-unit ratio")


@dataclass(frozen=True, slots=True)
class ArmData:
    """Sufficient statistics of one arm in one phase."""

    arm: str
    units: int = 0
    exposures: int = 0
    moments: Mapping[str, RunningMoments] = field(default_factory=dict)
    unit_sums: Mapping[str, float] = field(default_factory=dict)
    latency: LogHistogram = field(default_factory=LogHistogram)
    labels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    unusable: frozenset[str] = frozenset()
    """Per-unit counters whose stored sums were left out: their metrics have no value."""

    @property
    def requests(self) -> int:
        return self.moments.get(MOMENT_LATENCY, RunningMoments()).count

    def unit_sum(self, key: str) -> float:
        return float(self.unit_sums.get(key, 0.0))

    def ratio(self, metric: str) -> RatioSummary | None:
        """The metric as a ratio of per-unit means, for delta-method inference (None below 2 units)."""
        if self.units < 2:
            return None
        numerator, denominator = metric_ratio(metric)
        if numerator in self.unusable or denominator in self.unusable:
            return None
        n = float(self.units)
        s_m, ss_m = self.unit_sum(f"s:{numerator}"), self.unit_sum(f"ss:{numerator}")
        if denominator is None:
            return RatioSummary.from_sums(n, s_m, n, ss_m, n, s_m)
        s_d = self.unit_sum(f"s:{denominator}")
        if s_d <= 0.0:
            return None
        ss_d, cross = self.unit_sum(f"ss:{denominator}"), self.unit_sum(f"x:{numerator}|{denominator}")
        return RatioSummary.from_sums(n, s_m, s_d, ss_m, ss_d, cross)

    def metric_value(self, metric: str) -> float:
        """The arm's value of a ratio metric (NaN when it has none)."""
        summary = self.ratio(metric)
        return float(summary.ratio) if summary is not None else math.nan


@dataclass(frozen=True, slots=True)
class PhaseData:
    experiment: str
    phase: int
    arms: Mapping[str, ArmData]
    counters: Mapping[str, float] = field(default_factory=dict)
    unusable: tuple[str, ...] = ()
    """Stored sums left out of the analysis (not finite, or beyond what bounded values produce), as
    "arm: metric" lines; older versions could store such sums (see `experiments.finite`)."""

    def arm(self, name: str) -> ArmData:
        return self.arms.get(name) or ArmData(name)

    def counter(self, name: str) -> int:
        return int(self.counters.get(name, 0))


# Raw request-level sums of one metric as a store reads them: (count, sum, sum of squares); any may
# be None where SQLite stored a NaN.
RawMoments = tuple[object, object, object]


def build_phase_data(
    experiment: str,
    phase: int,
    moments: Mapping[str, dict[str, RawMoments]],
    histograms: Mapping[str, dict[int, int]],
    labels: Mapping[str, dict[str, dict[str, int]]],
    unit_sums: Mapping[str, dict[str, object]],
    counters: Mapping[str, float],
) -> PhaseData:
    """Assemble per-arm data from what a store read (shared by the SQLite and Redis stores).

    Sums the analysis cannot use are left out here, once, and listed in `PhaseData.unusable`."""
    exposure_arms = {name[len(EXPOSURES_PREFIX) :] for name in counters if name.startswith(EXPOSURES_PREFIX)}
    arms = sorted(set(moments) | set(histograms) | set(unit_sums) | exposure_arms)
    unusable: list[str] = []
    data = {}
    for arm in arms:
        arm_moments, bad_moments = _usable_moments(moments.get(arm, {}))
        arm_units, bad_counters = _usable_unit_sums(unit_sums.get(arm, {}))
        unusable += [f"{arm}: {metric}" for metric in sorted(bad_moments | bad_counters)]
        data[arm] = ArmData(
            arm=arm,
            units=int(arm_units.get("n", 0)),
            exposures=int(counters.get(EXPOSURES_PREFIX + arm, 0)),
            moments=arm_moments,
            unit_sums=arm_units,
            latency=LogHistogram.from_counts(histograms.get(arm, {})),
            labels=labels.get(arm, {}),
            unusable=frozenset(bad_counters),
        )
    return PhaseData(experiment, phase, data, dict(counters), tuple(unusable))


def _usable_moments(raw: Mapping[str, RawMoments]) -> tuple[dict[str, RunningMoments], set[str]]:
    usable: dict[str, RunningMoments] = {}
    bad: set[str] = set()
    for metric, (count, total, total_sq) in raw.items():
        n, s, ss = finite(count), finite(total), finite(total_sq)
        if usable_moments(n, s, ss):
            usable[metric] = RunningMoments.from_sums(int(n), s, ss)
        else:
            bad.add(metric)
    return usable, bad


def _usable_unit_sums(raw: Mapping[str, object]) -> tuple[dict[str, float], set[str]]:
    sums = {key: finite(value) for key, value in raw.items()}
    bad = unusable_unit_counters(sums)
    if not bad:
        return sums, set()
    kept = {
        key: value
        for key, value in sums.items()
        if not any(counter in bad for counter in unit_counter_of(key))
    }
    return kept, bad


class EventStore(Protocol):
    """Where events go and statistics come from. Open with `start()` (or `async with`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...

    async def write(self, events: Sequence[Event], *, batch_id: str | None = None) -> None:
        """Store a batch: raw events, feedback joined to arms, and the running statistics.

        All or nothing. A retry of a failed write passes the same `batch_id`, and a batch already
        applied (the reply was lost, not the write) is not applied twice.
        """

    async def feedback_targets(self, feedback: Feedback) -> list[JoinTarget]:
        """Where `feedback` would join if it were written now: the stored exposure of its id (or the
        latest exposure of its unit) in each experiment it names; empty when the store knows none."""

    async def phase_data(self, experiment: str, phase: int) -> PhaseData: ...

    async def phases(self, experiment: str) -> list[int]: ...

    async def add_decision(self, decision: Decision) -> None: ...

    async def decisions(self, experiment: str, limit: int = 1000) -> list[Decision]:
        """The latest `limit` decisions, oldest first."""

    async def load_state(self, key: str) -> dict[str, Any] | None: ...

    async def save_state(self, key: str, payload: Mapping[str, Any]) -> bool:
        """Store `payload` (which has an int "revision") only if its revision is above the stored one."""

    async def export_rows(self, experiment: str, kind: EventKind) -> list[dict[str, Any]]:
        """Raw events of one kind, oldest first, as flat rows (see `experiments.store.export`)."""

    async def export_rows_after(
        self, experiment: str, kind: EventKind, cursor: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """The raw events of one kind stored after `cursor` ("" for all), oldest first, and the
        cursor of the last one (the same cursor when there is none): an incremental read, for
        `experiments.event_cache`. Rows are only ever appended, so nothing is missed between reads."""

    def lease(self, name: str, ttl: float, owner: str) -> Lease:
        """A leader lease for `name` (a controller): Redis locks it; SQLite's single process holds it."""

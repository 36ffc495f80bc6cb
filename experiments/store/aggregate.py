"""Turning a batch of events into increments of the running statistics, shared by every store.

Request-level statistics are plain sums, so a batch adds to them. Unit-level statistics need per-unit
totals M_u (and their denominators D_u) and, across units, sum M_u, sum M_u^2 and sum M_u D_u: when a
unit's totals move from (m, d) to (m', d'), those sums move by m' - m, m'^2 - m^2 and m'd' - md. A
store increments the unit's totals atomically and gets the new values back (SQLite's RETURNING,
Redis's HINCRBYFLOAT inside a script), so old = new - delta is a consistent snapshot even when
replicas update the same unit at once, and the sums stay exact whatever the interleaving.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from experiments.events import Exposure, Feedback, Outcome
from experiments.finite import usable_value
from experiments.sketch import bucket_index
from experiments.store.base import (
    COUNTER_EXCLUDED,
    COUNTER_FORCED,
    COUNTER_NONFINITE_FEEDBACK,
    COUNTER_UNMATCHED_FEEDBACK,
    EXPOSURES_PREFIX,
    MOMENT_BYTES,
    MOMENT_ERROR,
    MOMENT_LATENCY,
    SCORE_COUNT_SUFFIX,
    UNIT_ERRORS,
    UNIT_EXPOSURES,
    UNIT_LATENCY,
    UNIT_REQUESTS,
    denominator_of,
)

PhaseKey = tuple[str, int]
ArmKey = tuple[str, int, str]
UnitKey = tuple[str, int, str, str]
MomentKey = tuple[str, int, str, str]

# Counters that are not about one phase (feedback that joined nothing) are kept under this phase.
ANY_PHASE = -1
# Feedback that named no experiment and joined nothing is counted under this experiment name.
ANY_EXPERIMENT = "*"


@dataclass(frozen=True, slots=True)
class JoinTarget:
    """Where a feedback value lands: the experiment, phase, arm and unit of the exposure it joined."""

    experiment: str
    phase: int
    arm: str
    unit_id: str | None
    analyzed: bool


@dataclass(slots=True)
class BatchDeltas:
    moments: dict[MomentKey, list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0.0, 0.0, 0.0])
    )
    histograms: dict[ArmKey, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    labels: dict[ArmKey, dict[tuple[str, str], int]] = field(default_factory=lambda: defaultdict(dict))
    counters: dict[PhaseKey, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    units: dict[UnitKey, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))

    def add_moment(self, key: MomentKey, value: float) -> None:
        moment = self.moments[key]
        moment[0] += 1.0
        moment[1] += value
        moment[2] += value * value

    def count(self, key: PhaseKey, name: str, amount: float = 1.0) -> None:
        counters = self.counters[key]
        counters[name] = counters.get(name, 0.0) + amount

    def add_unit(self, key: UnitKey, counter: str, amount: float) -> None:
        totals = self.units[key]
        totals[counter] = totals.get(counter, 0.0) + amount

    @property
    def phases(self) -> set[PhaseKey]:
        keys = {key[:2] for key in self.moments} | set(self.counters) | {key[:2] for key in self.units}
        return {(experiment, phase) for experiment, phase in keys if phase != ANY_PHASE}


def _add_exposure(deltas: BatchDeltas, exposure: Exposure) -> None:
    phase_key = (exposure.experiment, exposure.phase)
    if not exposure.analyzed or exposure.unit_id is None:
        deltas.count(phase_key, COUNTER_FORCED if exposure.forced else COUNTER_EXCLUDED)
        return
    deltas.count(phase_key, EXPOSURES_PREFIX + exposure.arm)
    deltas.add_unit((*phase_key, exposure.arm, exposure.unit_id), UNIT_EXPOSURES, 1.0)


def _add_outcome(deltas: BatchDeltas, outcome: Outcome) -> None:
    if not outcome.analyzed or outcome.unit_id is None:
        return
    arm_key = (outcome.experiment, outcome.phase, outcome.arm)
    error = 1.0 if outcome.error else 0.0
    deltas.add_moment((*arm_key, MOMENT_LATENCY), outcome.latency_s)
    deltas.add_moment((*arm_key, MOMENT_ERROR), error)
    deltas.add_moment((*arm_key, MOMENT_BYTES), float(outcome.response_bytes))
    histogram = deltas.histograms[arm_key]
    index = bucket_index(outcome.latency_s)
    histogram[index] = histogram.get(index, 0) + 1
    unit_key = (*arm_key, outcome.unit_id)
    deltas.add_unit(unit_key, UNIT_REQUESTS, 1.0)
    deltas.add_unit(unit_key, UNIT_ERRORS, error)
    deltas.add_unit(unit_key, UNIT_LATENCY, outcome.latency_s)
    for summary in outcome.outputs:
        metric = "output:" + summary.output
        labels = deltas.labels[arm_key]
        for label in summary.labels:
            labels[(summary.output, label)] = labels.get((summary.output, label), 0) + 1
        # A model can answer NaN or infinity: such a score is not summed (it would poison the arm).
        if summary.score is not None and usable_value(summary.score):
            deltas.add_moment((*arm_key, metric), summary.score)
            deltas.add_unit(unit_key, metric, summary.score)
            deltas.add_unit(unit_key, metric + SCORE_COUNT_SUFFIX, 1.0)


def _add_feedback(deltas: BatchDeltas, feedback: Feedback, target: JoinTarget) -> None:
    if not target.analyzed or target.unit_id is None:
        return
    if not usable_value(feedback.value):  # refused at the API; a direct write is counted, not summed
        deltas.count((target.experiment, target.phase), COUNTER_NONFINITE_FEEDBACK)
        return
    metric = "feedback:" + feedback.metric
    deltas.add_moment((target.experiment, target.phase, target.arm, metric), feedback.value)
    deltas.add_unit((target.experiment, target.phase, target.arm, target.unit_id), metric, feedback.value)


def aggregate(
    exposures: Sequence[Exposure],
    outcomes: Sequence[Outcome],
    joined: Sequence[tuple[Feedback, JoinTarget]],
    unmatched: Sequence[Feedback],
) -> BatchDeltas:
    deltas = BatchDeltas()
    for exposure in exposures:
        _add_exposure(deltas, exposure)
    for outcome in outcomes:
        _add_outcome(deltas, outcome)
    for feedback, target in joined:
        _add_feedback(deltas, feedback, target)
    for feedback in unmatched:
        deltas.count((feedback.experiment or ANY_EXPERIMENT, ANY_PHASE), COUNTER_UNMATCHED_FEEDBACK)
    return deltas


def unit_moment_deltas(
    created: bool, new_values: Mapping[str, float], deltas: Mapping[str, float]
) -> dict[str, float]:
    """Increments of the unit-level sums after one unit's totals moved by `deltas` to `new_values`.

    Keys: "n" (units), "s:C" (sum of C over units), "ss:C" (sum of C^2), "x:C|D" (sum of C*D for C and
    its denominator D). `created` says the unit had no totals before this update.
    """
    out: dict[str, float] = {"n": 1.0} if created else {}
    for counter, delta in deltas.items():
        new = new_values[counter]
        old = new - delta
        moved = {f"s:{counter}": delta, f"ss:{counter}": new * new - old * old}
        denominator = denominator_of(counter)
        if denominator is not None and denominator in deltas:
            new_d = new_values[denominator]
            old_d = new_d - deltas[denominator]
            moved[f"x:{counter}|{denominator}"] = new * new_d - old * old_d
        # A unit total an older version let overflow (or NaN) would make every sum it touches
        # non-finite, and Redis refuses such an increment: the unit's counter is left out instead.
        if all(math.isfinite(value) for value in moved.values()):
            out.update(moved)
    return out

"""Time series for the plots: cumulative lift with its confidence sequence, and exposures per arm.

Lift at time t uses exactly what the analysis would have used had it run at t: per-unit totals of
the metric's numerator and denominator over the events up to t, summed over units (n, sum M, sum M^2,
sum D, sum D^2, sum MD), then the delta-method difference (`experiments.stats.ratio_difference`) and
the mixture confidence sequence (`experiments.stats.confidence_sequence`). Per-unit totals move with
every event, so sum M^2 is carried as increments new^2 - old^2 per event, the same bookkeeping as the
stores' (`experiments.store.aggregate`); the last point therefore equals the report's comparison.
The bounds at each point are not intersected with earlier points: the running intersection would
depend on where the report happens to place its points, and the unintersected bounds are valid at
every point all the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.analysis_settings import AnalysisSettings
from experiments.report.event_arrays import ArmEvents, ExperimentEvents, FloatArray, IntArray
from experiments.report.model import ExposureSeries, LiftSeries
from experiments.stats import Looks, RatioSummary, SequentialSettings, confidence_sequence, ratio_difference

# At most this many points per series: enough for a smooth line on a plot a few hundred pixels wide,
# and it bounds the report's size however many events the store holds.
MAX_POINTS = 200


def checkpoints(times: FloatArray, limit: int = MAX_POINTS) -> FloatArray:
    """At most `limit` of the distinct event times, evenly spaced in rank, always with the last one."""
    unique = np.unique(times[np.isfinite(times)])
    if unique.size <= limit:
        return unique
    picks = np.unique(np.linspace(0, unique.size - 1, limit).round().astype(np.int64))
    return unique[picks]


def series_metric(metric: str) -> bool:
    """Whether `metric` has a per-unit time series here (ratio metrics; not quantiles or outputs)."""
    return metric in ("error_rate", "latency") or metric.startswith("feedback:")


@dataclass(frozen=True, slots=True)
class _MetricEvents:
    time: FloatArray
    unit: IntArray
    numerator: FloatArray
    denominator: FloatArray | None
    """None: the metric is per unit (feedback), its denominator is 1 per unit."""


def _metric_events(arm: ArmEvents, metric: str) -> _MetricEvents:
    if metric == "error_rate":
        return _MetricEvents(arm.outcome_time, arm.outcome_unit, arm.error, np.ones_like(arm.error))
    if metric == "latency":
        return _MetricEvents(arm.outcome_time, arm.outcome_unit, arm.latency, np.ones_like(arm.latency))
    found = arm.feedback.get(metric)
    if found is None:
        return _MetricEvents(np.empty(0), np.empty(0, dtype=np.int64), np.empty(0), None)
    return _MetricEvents(found.time, found.unit, found.value, None)


def _unit_totals_after(units: IntArray, values: FloatArray) -> FloatArray:
    """For events in time order: each event's unit total just after it (a cumulative sum per unit)."""
    order = np.argsort(units, kind="stable")  # groups each unit's events, keeping their time order
    ordered = values[order]
    running = np.cumsum(ordered)
    grouped = units[order]
    starts = np.r_[True, grouped[1:] != grouped[:-1]] if grouped.size else np.empty(0, dtype=bool)
    before_group = (running - ordered)[starts]
    within = running - before_group[np.cumsum(starts) - 1]
    after: FloatArray = np.empty_like(within)
    after[order] = within
    return after


def _at(times: FloatArray, increments: FloatArray, points: FloatArray) -> FloatArray:
    """Sum of the increments of all events at or before each point (`times` sorted)."""
    cumulative = np.r_[0.0, np.cumsum(increments)]
    return np.asarray(cumulative[np.searchsorted(times, points, side="right")], dtype=np.float64)


def _summary_at(arm: ArmEvents, metric: str, points: FloatArray) -> tuple[FloatArray, list[FloatArray]]:
    """(units, [sum M, sum D, sum M^2, sum D^2, sum MD]) at each point, as `RatioSummary.from_sums` wants."""
    first_seen = np.sort(arm.unit_first_seen())
    n = np.searchsorted(first_seen, points, side="right").astype(np.float64)
    events = _metric_events(arm, metric)
    order = np.argsort(events.time, kind="stable")
    time, unit, m = events.time[order], events.unit[order], events.numerator[order]
    new_m = _unit_totals_after(unit, m)
    old_m = new_m - m
    s_m, ss_m = _at(time, m, points), _at(time, new_m**2 - old_m**2, points)
    if events.denominator is None:
        return n, [s_m, n, ss_m, n, s_m]
    d = events.denominator[order]
    new_d = _unit_totals_after(unit, d)
    old_d = new_d - d
    s_d, ss_d = _at(time, d, points), _at(time, new_d**2 - old_d**2, points)
    return n, [s_m, s_d, ss_m, ss_d, _at(time, new_m * new_d - old_m * old_d, points)]


def _floats(values: FloatArray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def lift_series(
    events: ExperimentEvents, control: str, treatment: str, metric: str, settings: AnalysisSettings
) -> LiftSeries:
    """Treatment - control of `metric` at up to MAX_POINTS times of the current phase."""
    arm_c, arm_t = events.arms.get(control), events.arms.get(treatment)
    empty = LiftSeries(metric, control, treatment, (), (), (), (), (), (), (), ())
    if arm_c is None or arm_t is None:
        return empty
    if _metric_events(arm_c, metric).time.size + _metric_events(arm_t, metric).time.size == 0:
        return empty  # e.g. no feedback yet: a flat zero line would claim a measurement
    points = checkpoints(np.concatenate([arm_c.times(), arm_t.times()]))
    n_c, sums_c = _summary_at(arm_c, metric, points)
    n_t, sums_t = _summary_at(arm_t, metric, points)
    usable = (n_c >= 2) & (n_t >= 2) & (sums_c[1] > 0.0) & (sums_t[1] > 0.0)
    if not usable.any():
        return empty
    summary_c = RatioSummary.from_sums(n_c[usable], *(s[usable] for s in sums_c))
    summary_t = RatioSummary.from_sums(n_t[usable], *(s[usable] for s in sums_t))
    difference = ratio_difference(summary_c, summary_t, alpha=settings.alpha)
    estimate = np.asarray(difference.estimate, dtype=np.float64)
    looks = Looks(
        estimate=estimate,
        standard_error=np.asarray(difference.standard_error, dtype=np.float64),
        n_total=n_c[usable] + n_t[usable],
        n_min_arm=np.minimum(n_c[usable], n_t[usable]),
    )
    sequential = SequentialSettings(
        n_star=settings.expected_units, alpha=settings.alpha, burn_in=settings.burn_in
    )
    low, high = confidence_sequence(looks, sequential, intersect=False)
    return LiftSeries(
        metric=metric,
        control=control,
        treatment=treatment,
        time=_floats(points[usable]),
        control_units=tuple(int(v) for v in n_c[usable]),
        treatment_units=tuple(int(v) for v in n_t[usable]),
        control_value=_floats(np.asarray(summary_c.ratio, dtype=np.float64)),
        treatment_value=_floats(np.asarray(summary_t.ratio, dtype=np.float64)),
        difference=_floats(estimate),
        cs_low=_floats(low),
        cs_high=_floats(high),
    )


def exposure_series(events: ExperimentEvents, arms: list[str]) -> tuple[ExposureSeries, ...]:
    """Cumulative analysed exposures and units per arm over every phase (a unit counts once per phase)."""
    exposures: dict[str, list[FloatArray]] = {arm: [] for arm in arms}
    units: dict[str, list[FloatArray]] = {arm: [] for arm in arms}
    for phase in sorted(events.exposures):
        record = events.exposures[phase]
        for arm, values in record.times.items():
            exposures.setdefault(arm, []).append(values)
            units.setdefault(arm, []).append(record.unit_first_times[arm])
    merged = {arm: np.sort(np.concatenate(parts)) for arm, parts in exposures.items() if parts}
    if not merged:
        return ()
    points = checkpoints(np.concatenate(list(merged.values())))
    series = []
    for arm in exposures:
        if arm not in merged:
            continue
        first = np.sort(np.concatenate(units[arm]))
        series.append(
            ExposureSeries(
                arm=arm,
                time=_floats(points),
                exposures=tuple(int(v) for v in np.searchsorted(merged[arm], points, side="right")),
                units=tuple(int(v) for v in np.searchsorted(first, points, side="right")),
            )
        )
    return tuple(series)


def phase_starts(events: ExperimentEvents) -> tuple[tuple[int, float], ...]:
    """(phase, time of its first analysed exposure) for every phase with exposures."""
    starts = []
    for phase in sorted(events.exposures):
        firsts = [float(t[0]) for t in events.exposures[phase].times.values() if t.size]
        if firsts:
            starts.append((phase, min(firsts)))
    return tuple(starts)

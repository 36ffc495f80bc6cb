"""Looks over time at a ratio metric's difference, from the raw events: what makes always-valid
results monotone.

The mixture test's p-value is the running minimum of 1/Lambda over every look and its confidence
sequence the running intersection (`experiments.stats.sequential`). A status computed from the
current totals alone is one look: refresh by refresh it can say "significant" and later not. Here a
look is taken at every distinct event time of the phase, so the looks of an earlier refresh are a
prefix of the looks of a later one and the reported p can only fall, the interval only shrink.

Per-unit totals of the numerator M and denominator D move with every event, so sum M^2 is carried as
increments new^2 - old^2 per event (the stores' bookkeeping, `experiments.store.aggregate`); the
last look equals the store's sufficient statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.analysis_events import ArmEvents, FloatArray, IntArray
from experiments.stats import Looks, RatioSummary, ratio_difference


def history_metric(metric: str) -> bool:
    """Whether `metric` has per-unit looks over time (ratio metrics; not quantiles or outputs)."""
    return metric in ("error_rate", "latency") or metric.startswith("feedback:")


@dataclass(frozen=True, slots=True)
class MetricEvents:
    time: FloatArray
    unit: IntArray
    numerator: FloatArray
    denominator: FloatArray | None
    """None: the metric is per unit (feedback), its denominator is 1 per unit."""


def metric_events(arm: ArmEvents, metric: str) -> MetricEvents:
    if metric == "error_rate":
        return MetricEvents(arm.outcome_time, arm.outcome_unit, arm.error, np.ones_like(arm.error))
    if metric == "latency":
        return MetricEvents(arm.outcome_time, arm.outcome_unit, arm.latency, np.ones_like(arm.latency))
    found = arm.feedback.get(metric)
    if found is None:
        return MetricEvents(np.empty(0), np.empty(0, dtype=np.int64), np.empty(0), None)
    return MetricEvents(found.time, found.unit, found.value, None)


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


def summary_at(arm: ArmEvents, metric: str, points: FloatArray) -> tuple[FloatArray, list[FloatArray]]:
    """(units, [sum M, sum D, sum M^2, sum D^2, sum MD]) at each point, as `RatioSummary.from_sums` wants."""
    first_seen = np.sort(arm.unit_first_seen())
    n = np.searchsorted(first_seen, points, side="right").astype(np.float64)
    events = metric_events(arm, metric)
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


@dataclass(frozen=True, slots=True)
class RatioHistory:
    """Control and treatment summaries at the usable points, and the looks at their difference."""

    points: FloatArray
    control_units: FloatArray
    treatment_units: FloatArray
    control: RatioSummary
    treatment: RatioSummary
    looks: Looks


def ratio_history(arm_c: ArmEvents, arm_t: ArmEvents, metric: str, points: FloatArray) -> RatioHistory | None:
    """Looks at treatment - control of `metric` at `points` (times), where both arms have >= 2 units
    with data; None when no point has."""
    n_c, sums_c = summary_at(arm_c, metric, points)
    n_t, sums_t = summary_at(arm_t, metric, points)
    usable = (n_c >= 2) & (n_t >= 2) & (sums_c[1] > 0.0) & (sums_t[1] > 0.0)
    if not usable.any():
        return None
    summary_c = RatioSummary.from_sums(n_c[usable], *(s[usable] for s in sums_c))
    summary_t = RatioSummary.from_sums(n_t[usable], *(s[usable] for s in sums_t))
    difference = ratio_difference(summary_c, summary_t)
    looks = Looks(
        estimate=np.asarray(difference.estimate, dtype=np.float64),
        standard_error=np.asarray(difference.standard_error, dtype=np.float64),
        n_total=n_c[usable] + n_t[usable],
        n_min_arm=np.minimum(n_c[usable], n_t[usable]),
    )
    return RatioHistory(points[usable], n_c[usable], n_t[usable], summary_c, summary_t, looks)


def every_event_time(arm_c: ArmEvents, arm_t: ArmEvents) -> FloatArray:
    """The looks of the analysis: every distinct event time of either arm."""
    times = np.concatenate([arm_c.times(), arm_t.times()])
    return np.asarray(np.unique(times[np.isfinite(times)]), dtype=np.float64)

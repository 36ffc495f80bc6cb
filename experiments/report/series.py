"""Time series for the plots: cumulative lift with its confidence sequence, and exposures per arm.

Lift at time t uses exactly what the analysis used: the looks at every event time
(`experiments.analysis_history`), the delta-method difference and the mixture confidence sequence
intersected over every look; the plot shows up to MAX_POINTS of them, and its last point is the
report's comparison (the same running intersection, not a band recomputed from the last look).
"""

from __future__ import annotations

import numpy as np

from experiments.analysis_events import ExperimentEvents, FloatArray
from experiments.analysis_history import every_event_time, history_metric, metric_events, ratio_history
from experiments.analysis_settings import AnalysisSettings
from experiments.report.model import ExposureSeries, LiftSeries
from experiments.stats import SequentialSettings, confidence_sequence

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
    return history_metric(metric)


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
    if metric_events(arm_c, metric).time.size + metric_events(arm_t, metric).time.size == 0:
        return empty  # e.g. no feedback yet: a flat zero line would claim a measurement
    every = every_event_time(arm_c, arm_t)
    history = ratio_history(arm_c, arm_t, metric, every)
    if history is None:
        return empty
    sequential = SequentialSettings(
        n_star=settings.expected_units, alpha=settings.alpha, burn_in=settings.burn_in
    )
    # Bounds over every look, intersected: the band the analysis reports at its last point.
    low, high = confidence_sequence(history.looks, sequential)
    picks = np.searchsorted(history.points, checkpoints(history.points))
    return LiftSeries(
        metric=metric,
        control=control,
        treatment=treatment,
        time=_floats(history.points[picks]),
        control_units=tuple(int(v) for v in history.control_units[picks]),
        treatment_units=tuple(int(v) for v in history.treatment_units[picks]),
        control_value=_floats(np.asarray(history.control.ratio, dtype=np.float64)[picks]),
        treatment_value=_floats(np.asarray(history.treatment.ratio, dtype=np.float64)[picks]),
        difference=_floats(history.looks.estimate[picks]),
        cs_low=_floats(low[picks]),
        cs_high=_floats(high[picks]),
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

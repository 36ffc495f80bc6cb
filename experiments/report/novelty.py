"""Novelty and primacy: the effect by days since each unit's first exposure.

A new model can look better in its first days only because it is new (novelty), or worse until
users adapt (primacy). Splitting each goal's events by how long after the unit's first exposure they
happened (day 0, day 1, ..., then "7+" together) shows whether the effect fades or grows. Each day
is compared over the units active on it with the delta method (`experiments.stats.ratio_difference`);
these are descriptive, fixed-horizon intervals, not part of the verdict.
Reference: Kohavi, Tang, Xu, Trustworthy Online Controlled Experiments (2020), ch. 23; Chen, Liu,
Xu, "How A/B Tests Could Go Wrong: Automatic Diagnosis of Invalid Online Experiments", WSDM 2019.
"""

from __future__ import annotations

import numpy as np

from experiments.analysis_events import ArmEvents, ExperimentEvents, FloatArray, IntArray
from experiments.analysis_history import history_metric, metric_events
from experiments.report.model import NoveltyRow
from experiments.stats import RatioSummary, ratio_difference

DAY_S = 86_400.0
# Days 0-6 apart, then everything later in one bucket: a week shows a novelty effect fading, and
# later days are few enough per unit to pool.
LAST_DAY = 7


def _day_summary(arm: ArmEvents, metric: str, day: int) -> RatioSummary | None:
    first = arm.unit_first_seen()
    events = metric_events(arm, metric)
    if events.unit.size == 0:
        return None
    days = np.minimum(np.floor((events.time - first[events.unit]) / DAY_S), LAST_DAY).astype(np.int64)
    chosen = days == day
    size = arm.unit_count
    numerator = np.bincount(events.unit[chosen], weights=events.numerator[chosen], minlength=size)
    denominator: FloatArray
    if events.denominator is not None:
        weights = events.denominator[chosen]
        denominator = np.bincount(events.unit[chosen], weights=weights, minlength=size).astype(np.float64)
        active: IntArray = np.flatnonzero(denominator > 0.0)
    else:
        exposure_days = np.floor((arm.exposure_time - first[arm.exposure_unit]) / DAY_S)
        on_day = np.minimum(exposure_days, LAST_DAY) == day
        active = np.unique(np.concatenate([arm.exposure_unit[on_day], events.unit[chosen]])).astype(np.int64)
        denominator = np.ones(size)
    if active.size < 2:
        return None
    return RatioSummary.from_units(numerator[active], denominator[active])


def novelty_rows(
    events: ExperimentEvents, control: str, treatments: list[str], metrics: list[str], alpha: float
) -> tuple[NoveltyRow, ...]:
    """Per goal metric and treatment, one row per day since first exposure that both arms have."""
    rows = []
    arm_c = events.arms.get(control)
    for treatment in treatments:
        arm_t = events.arms.get(treatment)
        if arm_c is None or arm_t is None:
            continue
        for metric in (m for m in metrics if history_metric(m)):
            for day in range(LAST_DAY + 1):
                summary_c, summary_t = _day_summary(arm_c, metric, day), _day_summary(arm_t, metric, day)
                if summary_c is None or summary_t is None:
                    continue
                found = ratio_difference(summary_c, summary_t, alpha=alpha)
                rows.append(
                    NoveltyRow(
                        metric=metric,
                        treatment=treatment,
                        day=f"{day}+" if day == LAST_DAY else str(day),
                        control_units=int(summary_c.n),
                        treatment_units=int(summary_t.n),
                        difference=float(found.estimate),
                        ci_low=float(found.ci_low),
                        ci_high=float(found.ci_high),
                        p_value=float(found.p_value),
                    )
                )
    return tuple(rows)


def spans_days(rows: tuple[NoveltyRow, ...]) -> bool:
    """Whether there is anything to read: some metric with rows on two or more days."""
    days: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        days.setdefault((row.metric, row.treatment), set()).add(row.day)
    return any(len(seen) >= 2 for seen in days.values())

"""Winsorisation: heavy-tailed metrics capped at a configured percentile before they are compared.

One buyer of a thousand licences, or one request that waited a minute, can move a mean more than
the change being tested; its variance then hides real effects. Capping every value at the
configured percentile of both arms' values together (e.g. 99: the top 1 % are set to the 99th
percentile) trades a little bias, the same in both arms, for a much smaller variance. Values are
capped per event (a feedback value, a request's latency), then summed per unit as usual, so the
delta method, the looks over time and the sequential test all see the capped metric.
Reference: Kohavi, Tang, Xu, Trustworthy Online Controlled Experiments (2020), ch. 22 ("capping");
Deng, Knoblich, Lu, KDD 2018, section 5.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from experiments.analysis_events import ArmEvents, FeedbackEvents, FloatArray
from experiments.estimates import Estimate
from experiments.stats import RatioSummary, ratio_difference


def _values(arm: ArmEvents, metric: str) -> FloatArray:
    if metric == "latency":
        return arm.latency
    found = arm.feedback.get(metric)
    return found.value if found is not None else np.empty(0)


def _capped(arm: ArmEvents, metric: str, cap: float) -> ArmEvents:
    if metric == "latency":
        return replace(arm, latency=np.minimum(arm.latency, cap))
    found = arm.feedback.get(metric)
    if found is None:
        return arm
    feedback = dict(arm.feedback)
    feedback[metric] = FeedbackEvents(found.time, found.unit, np.minimum(found.value, cap))
    return replace(arm, feedback=feedback)


def winsorized_pair(
    control: ArmEvents, treatment: ArmEvents, metric: str, percentile: float
) -> tuple[tuple[ArmEvents, ArmEvents], float]:
    """Both arms with `metric` capped at the `percentile` of their pooled values, and the cap."""
    pooled = np.concatenate([_values(control, metric), _values(treatment, metric)])
    if pooled.size == 0:
        return (control, treatment), math.nan
    cap = float(np.percentile(pooled, percentile))
    return (_capped(control, metric, cap), _capped(treatment, metric, cap)), cap


def unit_summary(arm: ArmEvents, metric: str) -> RatioSummary | None:
    """The metric as a ratio of per-unit totals from the events (latency per request, feedback per
    unit); None below 2 units with data."""
    size = arm.unit_count
    numerator: FloatArray
    denominator: FloatArray
    if metric == "latency":
        numerator = np.bincount(arm.outcome_unit, weights=arm.latency, minlength=size).astype(np.float64)
        denominator = np.bincount(arm.outcome_unit, minlength=size).astype(np.float64)
        seen = denominator > 0.0
        numerator, denominator = numerator[seen], denominator[seen]
    else:
        found = arm.feedback.get(metric)
        numerator = np.zeros(size)
        if found is not None:
            numerator = np.bincount(found.unit, weights=found.value, minlength=size).astype(np.float64)
        denominator = np.ones(size)
    if numerator.size < 2:
        return None
    return RatioSummary.from_units(numerator, denominator)


def winsorized_comparison(
    control: ArmEvents, treatment: ArmEvents, metric: str, alpha: float
) -> tuple[Estimate, Estimate, tuple[float, float, float, float]] | None:
    """Estimates of both arms and the fixed-horizon (difference, CI low, CI high, p) of capped events."""
    summary_c, summary_t = unit_summary(control, metric), unit_summary(treatment, metric)
    if summary_c is None or summary_t is None:
        return None
    difference = ratio_difference(summary_c, summary_t, alpha=alpha)
    est_c = Estimate(float(summary_c.ratio), math.sqrt(float(summary_c.ratio_variance)), int(summary_c.n))
    est_t = Estimate(float(summary_t.ratio), math.sqrt(float(summary_t.ratio_variance)), int(summary_t.n))
    fixed = (
        float(difference.estimate),
        float(difference.ci_low),
        float(difference.ci_high),
        float(difference.p_value),
    )
    return est_c, est_t, fixed

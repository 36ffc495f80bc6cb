"""One comparison of a treatment with the control on one metric, before multiple-testing adjustment.

Fixed horizon: delta-method ratio differences over units, or Deng-Knoblich-Yu quantile differences
over units when the raw events are there. Always valid: the mixture sequential test over every look
of the phase (`experiments.analysis_history`), so its p is a running minimum and its confidence
sequence a running intersection. Around them: log-scale relative intervals, winsorisation
(`experiments.analysis_winsor`), CUPED with each unit's earlier phases as covariate, and the
Bayesian reading.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from experiments.analysis_events import ArmEvents, FloatArray, IntArray
from experiments.analysis_history import every_event_time, history_metric, ratio_history
from experiments.analysis_settings import AnalysisSettings
from experiments.analysis_winsor import winsorized_comparison, winsorized_pair
from experiments.estimates import (
    Estimate,
    difference_looks,
    estimate,
    lower_is_better,
    quantile_comparison,
    quantile_level,
)
from experiments.stats import (
    SequentialSettings,
    quantile_ci,
    quantile_difference_ci,
    ratio_difference,
    sequential_test,
)
from experiments.stats.bayes import bayes_summary
from experiments.stats.cuped import cuped_difference
from experiments.stats.relative import log_relative_interval
from experiments.status import (
    BayesReport,
    Comparison,
    CupedReport,
    Role,
)
from experiments.store.base import (
    ArmData,
)

_NAN = math.nan


def metric_role(metric: str) -> Role:
    if metric.startswith("feedback:"):
        return "goal"
    if metric.startswith("output:"):
        return "descriptive"
    return "guardrail"


def _quantile_samples(arm: ArmEvents | None) -> tuple[FloatArray, IntArray] | None:
    """Latencies with their unit codes: what the quantile interval over units needs."""
    if arm is None or arm.latency.size == 0:
        return None
    return arm.latency, arm.outcome_unit


def _clustered_estimate(arm: ArmEvents | None, level: float, alpha: float) -> Estimate | None:
    samples = _quantile_samples(arm)
    if samples is None:
        return None
    interval = quantile_ci(samples[0], level, alpha=alpha, unit_ids=samples[1])
    if not interval.enough_data:
        return None
    return Estimate(float(interval.estimate), float(interval.standard_error), int(samples[0].size))


def _fixed_horizon(
    control: ArmData,
    treatment: ArmData,
    metric: str,
    alpha: float,
    raw: tuple[ArmEvents | None, ArmEvents | None] | None,
) -> tuple[float, float, float, float]:
    """(difference, ci low, ci high, p) at a fixed horizon."""
    level = quantile_level(metric)
    if level is not None:
        if raw is not None:
            samples_c, samples_t = _quantile_samples(raw[0]), _quantile_samples(raw[1])
            if samples_c is None or samples_t is None:
                return _NAN, _NAN, _NAN, 1.0
            clustered = quantile_difference_ci(
                samples_c[0],
                samples_t[0],
                level,
                alpha=alpha,
                control_unit_ids=samples_c[1],
                treatment_unit_ids=samples_t[1],
            )
            if not clustered.enough_data:
                return _NAN, _NAN, _NAN, 1.0
            diff = clustered.difference
            return float(diff.estimate), float(diff.ci_low), float(diff.ci_high), float(diff.p_value)
        found = quantile_comparison(control, treatment, level, alpha)
        return found if found is not None else (_NAN, _NAN, _NAN, 1.0)
    summary_c, summary_t = control.ratio(metric), treatment.ratio(metric)
    if summary_c is None or summary_t is None:
        return _NAN, _NAN, _NAN, 1.0
    absolute = ratio_difference(summary_c, summary_t, alpha=alpha)
    return (
        float(absolute.estimate),
        float(absolute.ci_low),
        float(absolute.ci_high),
        float(absolute.p_value),
    )


def _sequential(
    metric: str,
    est_c: Estimate,
    est_t: Estimate,
    settings: AnalysisSettings,
    raw: tuple[ArmEvents | None, ArmEvents | None] | None,
) -> tuple[float, float, float]:
    """(always-valid p, cs low, cs high): over every look of the phase when the raw events are
    there, else from the current totals alone (one look)."""
    sequential_settings = SequentialSettings(
        n_star=settings.expected_units, alpha=settings.alpha, burn_in=settings.burn_in
    )
    looks = difference_looks(est_c, est_t)
    if raw is not None and raw[0] is not None and raw[1] is not None and history_metric(metric):
        history = ratio_history(raw[0], raw[1], metric, every_event_time(raw[0], raw[1]))
        if history is not None:
            looks = history.looks
    result = sequential_test(looks, sequential_settings)
    return float(result.p_value[-1]), float(result.ci_low[-1]), float(result.ci_high[-1])


def _per_unit(arm: ArmEvents, metric: str) -> tuple[FloatArray, IntArray]:
    """(value, unit code) of every unit with a value of `metric` in the phase: per request for
    error_rate and latency, the unit's sum for feedback (0 for a unit that sent none)."""
    if metric in ("error_rate", "latency"):
        size = arm.unit_count
        values = arm.error if metric == "error_rate" else arm.latency
        requests = np.bincount(arm.outcome_unit, minlength=size).astype(np.float64)
        sums = np.bincount(arm.outcome_unit, weights=values, minlength=size)
        seen = np.flatnonzero(requests > 0.0).astype(np.int64)
        return np.asarray(sums[seen] / requests[seen], dtype=np.float64), seen
    found = arm.feedback.get(metric)
    size = arm.unit_count
    totals = np.zeros(size) if found is None else np.bincount(found.unit, weights=found.value, minlength=size)
    return np.asarray(totals, dtype=np.float64), np.arange(size, dtype=np.int64)


def _cuped(
    metric: str, raw: tuple[ArmEvents | None, ArmEvents | None] | None, alpha: float
) -> CupedReport | None:
    """CUPED on per-unit values with each unit's value in the earlier phases as covariate; None
    without a pre-period (`experiments.stats.cuped`)."""
    if raw is None or not history_metric(metric):
        return None
    arm_c, arm_t = raw
    if arm_c is None or arm_t is None:
        return None
    if metric not in arm_c.pre_period or metric not in arm_t.pre_period:
        return None
    (y_c, units_c), (y_t, units_t) = _per_unit(arm_c, metric), _per_unit(arm_t, metric)
    found = cuped_difference(
        y_c, arm_c.pre_period[metric][units_c], y_t, arm_t.pre_period[metric][units_t], alpha=alpha
    )
    if found is None:
        return None
    return CupedReport(found.difference, found.ci_low, found.ci_high, found.variance_reduction)


def _bayes(metric: str, difference: float, low: float, high: float, alpha: float) -> BayesReport | None:
    """The posterior under a flat prior, from the fixed-horizon estimate and its standard error."""
    z = float(NormalDist().inv_cdf(1.0 - alpha / 2.0))
    se = (high - low) / (2.0 * z)
    found = bayes_summary(difference, se, higher_is_better=lower_is_better(metric) is False, alpha=alpha)
    if found is None:
        return None
    return BayesReport(
        found.chance_to_beat_control, found.expected_loss, found.credible_low, found.credible_high
    )


def compare(
    control: ArmData,
    treatment: ArmData,
    metric: str,
    settings: AnalysisSettings,
    raw: tuple[ArmEvents | None, ArmEvents | None] | None = None,
) -> tuple[Comparison, Estimate | None, Estimate | None]:
    """One comparison, before multiple-comparison adjustment (`p_value_adjusted` is the raw one).

    `raw`: the control's and treatment's raw events of the phase, when read."""
    level = quantile_level(metric)
    percentile = settings.winsorize.get(metric)
    capped = None
    est_c: Estimate | None
    est_t: Estimate | None
    if percentile is not None and raw is not None and raw[0] is not None and raw[1] is not None:
        raw, cap = winsorized_pair(raw[0], raw[1], metric, percentile)
        capped = winsorized_comparison(raw[0], raw[1], metric, settings.alpha)
    if capped is not None:
        est_c, est_t, (diff, low, high, p_fixed) = capped
    else:
        cap = _NAN
        if level is not None and raw is not None:
            est_c = _clustered_estimate(raw[0], level, settings.alpha)
            est_t = _clustered_estimate(raw[1], level, settings.alpha)
        else:
            est_c = estimate(control, metric, settings.alpha)
            est_t = estimate(treatment, metric, settings.alpha)
        diff, low, high, p_fixed = _fixed_horizon(control, treatment, metric, settings.alpha, raw)
    p_seq, cs_low, cs_high, enough = 1.0, -math.inf, math.inf, False
    rel_low = rel_high = _NAN
    if est_c is not None and est_t is not None:
        p_seq, cs_low, cs_high = _sequential(metric, est_c, est_t, settings, raw)
        enough = min(est_c.n, est_t.n) >= settings.burn_in
        rel_low, rel_high = log_relative_interval(
            est_c.value, est_c.standard_error, est_t.value, est_t.standard_error, alpha=settings.alpha
        )
    value_c = est_c.value if est_c is not None else _NAN
    value_t = est_t.value if est_t is not None else _NAN
    relative = (value_t - value_c) / value_c if math.isfinite(value_c) and value_c != 0.0 else _NAN
    bayes = _bayes(metric, diff, low, high, settings.alpha) if settings.bayesian else None
    comparison = Comparison(
        metric=metric,
        role=metric_role(metric),
        control=control.arm,
        treatment=treatment.arm,
        control_value=value_c,
        treatment_value=value_t,
        difference=diff,
        ci_low=low,
        ci_high=high,
        relative=relative,
        relative_ci_low=rel_low,
        relative_ci_high=rel_high,
        cs_low=cs_low,
        cs_high=cs_high,
        p_value=p_fixed,
        p_value_sequential=p_seq,
        p_value_adjusted=p_seq,
        significant=False,
        direction="none",
        enough_data=enough,
        bayes=bayes,
        cuped=_cuped(metric, raw, settings.alpha),
        winsorized_at=cap,
    )
    return comparison, est_c, est_t

"""Analysis of one phase of an experiment, from the store's sufficient statistics.

Every number comes from `experiments.stats`: delta-method ratio differences over units (fixed
horizon), Deng-Knoblich-Yu quantile differences, the mixture sequential test and its confidence
sequence (always valid: dashboards refresh at will), Holm across guardrails and Benjamini-Hochberg
across goals, chi-square and sequential (Dirichlet-multinomial) sample ratio checks, and the
sequential sample size for the pre-registered minimum detectable effect. Roles: feedback metrics
are goals; latency, error rate and latency quantiles are guardrails; output metrics are descriptive.

With the raw events (`experiments.analysis_events`, which `status_of` reads), ratio metrics are
looked at every event time, so the always-valid p is the running minimum and the confidence
sequence the running intersection over the whole phase (`experiments.analysis_history`); latency
quantiles get intervals over units (requests of one unit are not independent). Relative intervals
are on the log scale (`experiments.stats.relative`).

Health and the decision (ship / roll back / keep running / unhealthy) are in `experiments.verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from statistics import NormalDist

import numpy as np

from experiments.analysis_events import ArmEvents, ExperimentEvents, FloatArray, IntArray, load_events
from experiments.analysis_history import every_event_time, history_metric, ratio_history
from experiments.analysis_settings import AnalysisSettings
from experiments.analysis_winsor import winsorized_comparison, winsorized_pair
from experiments.config import AbConfig, CanaryConfig
from experiments.estimates import (
    Estimate,
    difference_looks,
    estimate,
    lower_is_better,
    quantile_comparison,
    quantile_level,
)
from experiments.splits.ab import AbSplit
from experiments.splits.canary import CanarySplit
from experiments.stats import (
    SequentialSettings,
    benjamini_hochberg,
    holm,
    quantile_ci,
    quantile_difference_ci,
    ratio_difference,
    sequential_test,
)
from experiments.stats.bayes import bayes_summary
from experiments.stats.cuped import cuped_difference
from experiments.stats.relative import log_relative_interval
from experiments.status import (
    ArmReport,
    BayesReport,
    Comparison,
    CupedReport,
    Direction,
    ExperimentStatus,
    Role,
)
from experiments.store.base import (
    ArmData,
    EventStore,
    PhaseData,
)
from experiments.verdict import Planning, check_health, decide, plan_units

_NAN = math.nan
_LATENCY_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def metric_role(metric: str) -> Role:
    if metric.startswith("feedback:"):
        return "goal"
    if metric.startswith("output:"):
        return "descriptive"
    return "guardrail"


def arm_report(arm: ArmData, share: float, metrics: Sequence[str], alpha: float) -> ArmReport:
    values = {}
    for metric in metrics:
        found = estimate(arm, metric, alpha)
        values[metric] = found.value if found is not None else _NAN
    labels = {
        output: {label: count / total for label, count in counts.items()}
        for output, counts in arm.labels.items()
        if (total := sum(counts.values())) > 0
    }
    quantiles = {name: arm.latency.quantile(q) for name, q in _LATENCY_QUANTILES.items()}
    return ArmReport(arm.arm, arm.units, arm.exposures, arm.requests, share, values, quantiles, labels)


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


def _direction(item: Comparison, fixed_horizon: bool = False) -> Direction:
    low, high = (item.ci_low, item.ci_high) if fixed_horizon else (item.cs_low, item.cs_high)
    if not item.significant or not math.isfinite(low + high):
        return "changed" if item.significant else "none"
    lower = lower_is_better(item.metric)
    if lower is None:
        return "changed"
    went_down = high < 0.0
    return "better" if went_down == lower else "worse"


def adjust(
    comparisons: Sequence[Comparison], alpha: float, *, fixed_horizon: bool = False
) -> list[Comparison]:
    """Holm across guardrails, Benjamini-Hochberg across goals; descriptive metrics unadjusted.

    Sequential mode (the default) adjusts the always-valid p-values; fixed-horizon mode the goals'
    fixed-horizon ones, which `analyze` only lets decide once the planned sample is reached.
    Guardrails stay sequential in both: a regression must be able to stop an experiment early."""
    adjusted = list(comparisons)
    for role, method in (("guardrail", holm), ("goal", benjamini_hochberg)):
        indices = [i for i, item in enumerate(adjusted) if item.role == role]
        if not indices:
            continue
        fixed = fixed_horizon and role == "goal"
        raw = [adjusted[i].p_value if fixed else adjusted[i].p_value_sequential for i in indices]
        p_values = method(np.array(raw))
        for i, p in zip(indices, p_values, strict=True):
            adjusted[i] = replace(adjusted[i], p_value_adjusted=float(p))
    finished = []
    for item in adjusted:
        item = replace(item, significant=item.enough_data and item.p_value_adjusted <= alpha)
        finished.append(replace(item, direction=_direction(item, fixed_horizon and item.role == "goal")))
    return finished


def _horizon(settings: AnalysisSettings, planning: Planning | None) -> int:
    """The fixed-horizon sample (all arms): the mde's plan, else `expected_units`."""
    if settings.mde is not None and planning is not None:
        return planning.planned_units
    return settings.expected_units


def analyze(
    experiment: str,
    kind: str,
    data: PhaseData,
    *,
    shares: Mapping[str, float],
    metrics: Sequence[str],
    settings: AnalysisSettings,
    generated_at: float,
    events: ExperimentEvents | None = None,
) -> ExperimentStatus:
    """The status of one phase. `shares`: the arms in order (control first) with their expected shares;
    `events`: the phase's raw events, for looks over time and quantiles over units (else the store's
    totals alone)."""
    arms = list(shares)
    control = arms[0]
    reports = tuple(arm_report(data.arm(arm), shares[arm], metrics, settings.alpha) for arm in arms)
    raw: list[Comparison] = []
    planning: Planning | None = None
    for treatment in arms[1:]:
        pair = None if events is None else (events.arms.get(control), events.arms.get(treatment))
        for metric in metrics:
            item, est_c, est_t = compare(data.arm(control), data.arm(treatment), metric, settings, pair)
            raw.append(item)
            if planning is None and item.role == "goal":
                planning = plan_units(est_c, est_t, len(arms), settings)
    total = sum(data.arm(arm).units for arm in arms if shares[arm] > 0.0)
    horizon = _horizon(settings, planning) if settings.fixed_horizon else 0
    if total < horizon:  # a fixed-horizon goal is read once, at its planned size
        raw = [replace(item, enough_data=False) if item.role == "goal" else item for item in raw]
    comparisons = tuple(adjust(raw, settings.alpha, fixed_horizon=settings.fixed_horizon))
    first_times = None if events is None else events.exposures.get(data.phase)
    health = check_health(
        data,
        shares,
        planned_units=settings.expected_units,
        first_exposures=None if first_times is None else first_times.unit_first_times,
    )
    units = {arm: data.arm(arm).units for arm in arms if shares[arm] > 0.0}
    verdict = decide(comparisons, health, units, settings, planning)
    if total < horizon and verdict.action == "keep_running":
        waiting = f"goal: fixed horizon, read at {horizon:,} units ({total:,} so far)"
        verdict = replace(verdict, reasons=(waiting, *verdict.reasons), more_units=horizon - total)
    return ExperimentStatus(
        experiment=experiment,
        kind=kind,
        phase=data.phase,
        control=control,
        alpha=settings.alpha,
        expected_units=settings.expected_units,
        generated_at=generated_at,
        arms=reports,
        comparisons=comparisons,
        health=health,
        decision=verdict,
    )


def settings_of(config: AbConfig | CanaryConfig) -> AnalysisSettings:
    return AnalysisSettings(
        alpha=config.alpha,
        expected_units=config.expected_units,
        mde=config.mde,
        bayesian=config.analysis == "bayesian",
        fixed_horizon=config.decision == "fixed_horizon",
        winsorize=dict(config.winsorize),
    )


async def status_of(
    name: str,
    config: AbConfig | CanaryConfig,
    split: AbSplit | CanarySplit,
    store: EventStore,
    *,
    now: float,
) -> ExperimentStatus:
    """The status of an A/B test or canary in the phase its analysis covers (what the admin API
    serves): the current one, or a finished canary's last step, which the decision's reasons say."""
    metrics = list(config.metrics)
    if isinstance(config, CanaryConfig):
        metrics += [
            g.metric
            for g in config.guardrails
            if g.metric != "shadow_disagreement" and g.metric not in metrics
        ]
    settings = settings_of(config)
    phase, shares = split.analysed_phase()
    data = await store.phase_data(name, phase)
    events = await load_events(store, name, phase)
    status = analyze(
        name,
        split.kind,
        data,
        shares=shares,
        metrics=metrics,
        settings=settings,
        generated_at=now,
        events=events,
    )
    if phase == split.current_phase:
        return status
    finished = (
        f"the {split.kind} is {split.state.status.value.replace('_', ' ')}: this analysis covers its last "
        f"step (phase {phase}), the last with traffic on both arms"
    )
    decision = replace(status.decision, reasons=(finished, *status.decision.reasons))
    return replace(status, decision=decision)

"""Analysis of one phase of an experiment, from the store's sufficient statistics.

Every number comes from `experiments.stats`: delta-method ratio differences over units (fixed
horizon), Deng-Knoblich-Yu quantile differences, the mixture sequential test and its confidence
sequence (always valid: dashboards refresh at will), Holm across guardrails and Benjamini-Hochberg
across goals, chi-square and sequential (Dirichlet-multinomial) sample ratio checks, and the
sequential sample size for "keep running ~N more units". Roles: feedback metrics are goals; latency,
error rate and latency quantiles are guardrails; output metrics are descriptive.

Health and the decision (ship / roll back / keep running / unhealthy) are in `experiments.verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from experiments.analysis_settings import AnalysisSettings
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
    ratio_difference,
    sequential_test,
)
from experiments.status import (
    ArmReport,
    Comparison,
    Direction,
    ExperimentStatus,
    Role,
)
from experiments.store.base import (
    ArmData,
    EventStore,
    PhaseData,
)
from experiments.verdict import check_health, decide, more_units_needed

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


def _fixed_horizon(
    control: ArmData, treatment: ArmData, metric: str, alpha: float
) -> tuple[float, float, float, float, float, float]:
    """(difference, ci low, ci high, p, relative ci low, relative ci high) at a fixed horizon."""
    level = quantile_level(metric)
    if level is not None:
        found = quantile_comparison(control, treatment, level, alpha)
        if found is None:
            return _NAN, _NAN, _NAN, 1.0, _NAN, _NAN
        return (*found, _NAN, _NAN)
    summary_c, summary_t = control.ratio(metric), treatment.ratio(metric)
    if summary_c is None or summary_t is None:
        return _NAN, _NAN, _NAN, 1.0, _NAN, _NAN
    absolute = ratio_difference(summary_c, summary_t, alpha=alpha)
    rel_low = rel_high = _NAN
    if float(summary_c.ratio) != 0.0:
        relative = ratio_difference(summary_c, summary_t, relative=True, alpha=alpha)
        rel_low, rel_high = float(relative.ci_low), float(relative.ci_high)
    return (
        float(absolute.estimate),
        float(absolute.ci_low),
        float(absolute.ci_high),
        float(absolute.p_value),
        rel_low,
        rel_high,
    )


def compare(
    control: ArmData, treatment: ArmData, metric: str, settings: AnalysisSettings
) -> tuple[Comparison, Estimate | None, Estimate | None]:
    """One comparison, before multiple-comparison adjustment (`p_value_adjusted` is the raw one)."""
    est_c = estimate(control, metric, settings.alpha)
    est_t = estimate(treatment, metric, settings.alpha)
    diff, low, high, p_fixed, rel_low, rel_high = _fixed_horizon(control, treatment, metric, settings.alpha)
    p_seq, cs_low, cs_high, enough = 1.0, -math.inf, math.inf, False
    if est_c is not None and est_t is not None:
        sequential = sequential_test(
            difference_looks(est_c, est_t),
            SequentialSettings(
                n_star=settings.expected_units, alpha=settings.alpha, burn_in=settings.burn_in
            ),
        )
        p_seq = float(sequential.p_value[-1])
        cs_low, cs_high = float(sequential.ci_low[-1]), float(sequential.ci_high[-1])
        enough = min(est_c.n, est_t.n) >= settings.burn_in
    value_c = est_c.value if est_c is not None else _NAN
    value_t = est_t.value if est_t is not None else _NAN
    relative = (value_t - value_c) / value_c if math.isfinite(value_c) and value_c != 0.0 else _NAN
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
    )
    return comparison, est_c, est_t


def _direction(item: Comparison) -> Direction:
    if not item.significant or not math.isfinite(item.cs_low + item.cs_high):
        return "changed" if item.significant else "none"
    lower = lower_is_better(item.metric)
    if lower is None:
        return "changed"
    went_down = item.cs_high < 0.0
    return "better" if went_down == lower else "worse"


def adjust(comparisons: Sequence[Comparison], alpha: float) -> list[Comparison]:
    """Holm across guardrails, Benjamini-Hochberg across goals; descriptive metrics unadjusted."""
    adjusted = list(comparisons)
    for role, method in (("guardrail", holm), ("goal", benjamini_hochberg)):
        indices = [i for i, item in enumerate(adjusted) if item.role == role]
        if not indices:
            continue
        p_values = method(np.array([adjusted[i].p_value_sequential for i in indices]))
        for i, p in zip(indices, p_values, strict=True):
            adjusted[i] = replace(adjusted[i], p_value_adjusted=float(p))
    finished = []
    for item in adjusted:
        item = replace(item, significant=item.enough_data and item.p_value_adjusted <= alpha)
        finished.append(replace(item, direction=_direction(item)))
    return finished


def analyze(
    experiment: str,
    kind: str,
    data: PhaseData,
    *,
    shares: Mapping[str, float],
    metrics: Sequence[str],
    settings: AnalysisSettings,
    generated_at: float,
) -> ExperimentStatus:
    """The status of one phase. `shares`: the arms in order (control first) with their expected shares."""
    arms = list(shares)
    control = arms[0]
    reports = tuple(arm_report(data.arm(arm), shares[arm], metrics, settings.alpha) for arm in arms)
    raw: list[Comparison] = []
    planning: int | None = None
    for treatment in arms[1:]:
        for metric in metrics:
            item, est_c, est_t = compare(data.arm(control), data.arm(treatment), metric, settings)
            raw.append(item)
            if planning is None and item.role == "goal":
                planning = more_units_needed(item, est_c, est_t, len(arms), settings.alpha)
    comparisons = tuple(adjust(raw, settings.alpha))
    health = check_health(data, shares)
    units = {arm: data.arm(arm).units for arm in arms if shares[arm] > 0.0}
    verdict = decide(comparisons, health, units, settings, planning)
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
    settings = AnalysisSettings(alpha=config.alpha, expected_units=config.expected_units)
    phase, shares = split.analysed_phase()
    data = await store.phase_data(name, phase)
    status = analyze(
        name, split.kind, data, shares=shares, metrics=metrics, settings=settings, generated_at=now
    )
    if phase == split.current_phase:
        return status
    finished = (
        f"the {split.kind} is {split.state.status.value.replace('_', ' ')}: this analysis covers its last "
        f"step (phase {phase}), the last with traffic on both arms"
    )
    decision = replace(status.decision, reasons=(finished, *status.decision.reasons))
    return replace(status, decision=decision)

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
are on the log scale (`experiments.stats.relative`). One comparison is `experiments.analysis_compare`;
this module adjusts them across metrics and gathers the status.

Health and the decision (ship / roll back / keep running / unhealthy) are in `experiments.verdict`;
each goal's effect per segment of the configured dimensions in `experiments.analysis_segments`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from experiments.analysis_compare import compare
from experiments.analysis_events import ExperimentEvents
from experiments.analysis_segments import segment_breakdown
from experiments.analysis_settings import AnalysisSettings
from experiments.config import AbConfig, CanaryConfig
from experiments.estimates import (
    estimate,
    lower_is_better,
)
from experiments.event_cache import EventCache
from experiments.event_reader import load_events
from experiments.splits.ab import AbSplit
from experiments.splits.canary import CanarySplit
from experiments.stats import (
    benjamini_hochberg,
    holm,
)
from experiments.status import (
    ArmReport,
    Comparison,
    Direction,
    ExperimentStatus,
)
from experiments.store.base import (
    ArmData,
    EventStore,
    PhaseData,
)
from experiments.verdict import Planning, check_health, decide, plan_units

_NAN = math.nan
_LATENCY_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


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
            arm_c, arm_t = pair if pair is not None else (None, None)
            if item.role == "goal" and settings.segments and arm_c is not None and arm_t is not None:
                effects, spread = segment_breakdown(arm_c, arm_t, metric, settings.segments, settings.alpha)
                item = replace(item, segments=effects, heterogeneity=spread)
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
        segments=tuple(config.segments),
    )


async def status_of(
    name: str,
    config: AbConfig | CanaryConfig,
    split: AbSplit | CanarySplit,
    store: EventStore,
    *,
    now: float,
    cache: EventCache | None = None,
) -> ExperimentStatus:
    """The status of an A/B test or canary in the phase its analysis covers (what the admin API
    serves): the current one, or a finished canary's last step, which the decision's reasons say.

    `cache`: the store's `EventCache`, so only events stored since the last call are read (the
    raw events are otherwise read whole, which dominates on a large store)."""
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
    events = await (cache.events(name, phase) if cache is not None else load_events(store, name, phase))
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

"""The report's header: what ran, how it was split over time, and how the tests are tuned.

The allocation history lists every phase the store knows (a phase is a stretch of traffic split one
way: a canary step, an A/B test between weight changes) with its time span and units per arm from
the raw exposures. The configured split is stored only for the current phase; a canary's earlier
steps are recovered from the percent its controller recorded in each decision.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from experiments.analysis_events import ExperimentEvents, FloatArray
from experiments.analysis_settings import AnalysisSettings
from experiments.config import AbConfig, CanaryConfig
from experiments.guardrails import guardrail_bound
from experiments.report.model import (
    ArmSetup,
    CanaryPlan,
    Header,
    PhaseRecord,
    SequentialSetup,
    StepPlan,
    TimelineEntry,
    Window,
)
from experiments.splits import BASELINE, CANDIDATE, AbSplit, CanarySplit
from experiments.stats import mixture_rho
from experiments.stats.srm import DEFAULT_PRIOR_CONCENTRATION, DEFAULT_SRM_ALPHA

# Controller actions that end a phase and open the next one.
_PHASE_CHANGES = ("advance", "promote", "rollback")


def _canary_plan(config: CanaryConfig, split: CanarySplit) -> CanaryPlan:
    guardrails = []
    for guardrail in config.guardrails:
        bound, threshold = guardrail_bound(guardrail)
        guardrails.append(f"{guardrail.metric} {bound} {threshold:g}")
    return CanaryPlan(
        steps=tuple(StepPlan(s.percent, float(s.min_duration), s.min_units) for s in config.steps),
        current_step=split.state.step,
        guardrails=tuple(guardrails),
        interval_s=float(config.interval),
    )


def _step_shares(phase: int, entries: Sequence[TimelineEntry]) -> dict[str, float] | None:
    for entry in entries:
        if entry.phase == phase and entry.percent is not None:
            candidate = entry.percent / 100.0
            return {BASELINE: 1.0 - candidate, CANDIDATE: candidate}
    return None


def _change_into(phase: int, entries: Sequence[TimelineEntry]) -> str:
    if phase == 0:
        return "start"
    for entry in reversed(entries):
        if entry.phase == phase - 1 and entry.action in _PHASE_CHANGES:
            reason = entry.reasons[0] if entry.reasons else ""
            return f"{entry.action}: {reason}" if reason else entry.action
    return ""


def _sizes(arrays: Mapping[str, FloatArray], arms: Collection[str]) -> dict[str, int]:
    """Each arm's array length, configured arms first in their order (an arm since removed last)."""
    ordered = [arm for arm in arms if arm in arrays] + sorted(set(arrays).difference(arms))
    return {arm: int(arrays[arm].size) for arm in ordered}


def allocation_history(
    split: AbSplit | CanarySplit,
    events: ExperimentEvents,
    stored_phases: Sequence[int],
    entries: Sequence[TimelineEntry],
) -> tuple[PhaseRecord, ...]:
    current = split.current_phase
    records = []
    for phase in sorted({*stored_phases, *events.exposures, current}):
        exposures = events.exposures.get(phase)
        times = [t for t in exposures.times.values() if t.size] if exposures else []
        if phase == current:
            expected: dict[str, float] | None = split.shares()
        else:
            expected = _step_shares(phase, entries) if isinstance(split, CanarySplit) else None
        records.append(
            PhaseRecord(
                phase=phase,
                started=min(float(t[0]) for t in times) if times else math.nan,
                ended=max(float(t[-1]) for t in times) if times else math.nan,
                expected_shares=expected,
                units=_sizes(exposures.unit_first_times, split.clusters) if exposures else {},
                exposures=_sizes(exposures.times, split.clusters) if exposures else {},
                current=phase == current,
                change=_change_into(phase, entries),
            )
        )
    return tuple(records)


def build_header(
    name: str,
    config: AbConfig | CanaryConfig,
    split: AbSplit | CanarySplit,
    *,
    events: ExperimentEvents,
    stored_phases: Sequence[int],
    entries: Sequence[TimelineEntry],
    settings: AnalysisSettings,
    metrics: Sequence[str],
    generated_at: float,
) -> Header:
    shares = split.shares()
    start, end = events.window()
    return Header(
        experiment=name,
        kind=split.kind,
        control=next(iter(split.clusters)),
        arms=tuple(ArmSetup(arm, cluster, shares.get(arm, 0.0)) for arm, cluster in split.clusters.items()),
        unit_sources=tuple(config.unit),
        salt=split.salt,
        state=split.state.status.value,
        phase=split.current_phase,
        coverage=split.state.coverage if isinstance(split, AbSplit) else None,
        canary=(
            _canary_plan(config, split)
            if isinstance(config, CanaryConfig) and isinstance(split, CanarySplit)
            else None
        ),
        history=allocation_history(split, events, stored_phases, entries),
        alpha=settings.alpha,
        sequential=SequentialSetup(
            n_star=settings.expected_units,
            burn_in=settings.burn_in,
            mixture_rho=mixture_rho(settings.expected_units, settings.alpha),
            srm_alpha=DEFAULT_SRM_ALPHA,
            srm_prior_concentration=DEFAULT_PRIOR_CONCENTRATION,
        ),
        window=Window(start, end, generated_at),
        metrics=tuple(metrics),
    )

"""Whether an experiment's data can be trusted, what to do about it, and how much longer to run.

Health: a sample ratio mismatch or units seen in several arms invalidate any decision. SRM is
checked two ways, sharing the level 0.001 so a healthy split is flagged at most once per thousand
experiments however often it is checked: an alpha-spent chi-square at four planned looks (a quarter,
half, three quarters and all of `expected_units`, counted from the units' first exposures, so it has
nearly a single chi-square's power at the planned size), and the sequential Dirichlet-multinomial
test at every refresh for gross imbalances and for experiments that run past their plan.

The verdict explains itself in three layers, in this order: the goals decide (a significant goal
improvement ships, a goal regression rolls back, otherwise keep running); guardrails can block (a
significant guardrail regression turns any verdict into roll back); health can invalidate (an
unhealthy experiment has no verdict but "unhealthy"). Each layer adds its reason, so a reader sees
why a better goal is not shipped. "Keep running" plans by the pre-registered minimum detectable
effect (`mde`), never by the observed effect, which in an A/A test is noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from experiments.analysis_events import FloatArray
from experiments.analysis_settings import AnalysisSettings
from experiments.estimates import Estimate
from experiments.stats import sequential_sample_size_means, sequential_srm, srm_chi2
from experiments.stats.srm import DEFAULT_SRM_ALPHA, SPENT_LOOKS, spent_chi2_srm
from experiments.status import Action, Comparison, Health, SrmReport, Verdict
from experiments.store.base import (
    COUNTER_CROSSOVERS,
    COUNTER_EXCLUDED,
    COUNTER_FORCED,
    COUNTER_NONFINITE_FEEDBACK,
    PhaseData,
)

# More than 1 % of units seen in two arms means stickiness is broken (a cookie lost, ids mixed).
MAX_CROSSOVER_SHARE = 0.01
# Without a pre-registered `mde`, "keep running" plans for this relative effect on the control: a 2 %
# change is about the smallest that inference-service experiments act on.
MIN_RELATIVE_MDE = 0.02
# The SRM level is shared: most for the planned chi-square looks (the power that matters), a tenth
# for the sequential test that watches every refresh. Together they stay within DEFAULT_SRM_ALPHA.
SEQUENTIAL_SRM_ALPHA = DEFAULT_SRM_ALPHA / 10.0
SPENT_SRM_ALPHA = DEFAULT_SRM_ALPHA - SEQUENTIAL_SRM_ALPHA


def counts_at_planned_looks(
    first_exposures: Mapping[str, FloatArray], arms: Sequence[str], planned_units: int
) -> np.ndarray:
    """Units per arm at the time the total first reached k/SPENT_LOOKS of `planned_units`, shaped
    (looks, arms); zeros for looks not reached yet. Units first seen at the same instant as the look's
    last one count in (a look is a time, and their order within it is unknown)."""
    times = [np.sort(np.asarray(first_exposures.get(arm, np.empty(0)), dtype=np.float64)) for arm in arms]
    merged = np.sort(np.concatenate(times))
    counts = np.zeros((SPENT_LOOKS, len(arms)), dtype=np.float64)
    for look in range(SPENT_LOOKS):
        size = math.ceil(planned_units * (look + 1) / SPENT_LOOKS)
        if size <= merged.size:
            at = merged[size - 1]
            counts[look] = [np.searchsorted(t, at, side="right") for t in times]
    return counts


def check_health(
    data: PhaseData,
    shares: Mapping[str, float],
    *,
    planned_units: int | None = None,
    first_exposures: Mapping[str, FloatArray] | None = None,
) -> Health:
    """`first_exposures` (per arm, the times units were first exposed) enables the planned chi-square
    looks at `planned_units`; without it only the sequential test runs, at the whole level."""
    problems: list[str] = []
    srm = None
    arms = [arm for arm, share in shares.items() if share > 0.0]
    observed = {arm: data.arm(arm).units for arm in arms}
    total = sum(observed.values())
    if len(arms) >= 2 and total > 0:
        counts = np.array([observed[arm] for arm in arms], dtype=np.float64)
        weights = np.array([shares[arm] for arm in arms], dtype=np.float64)
        fixed = srm_chi2(counts, weights)
        spent = first_exposures is not None and planned_units is not None
        sequential = sequential_srm(
            counts.reshape(1, -1), weights, alpha=SEQUENTIAL_SRM_ALPHA if spent else DEFAULT_SRM_ALPHA
        )
        mismatch = bool(sequential.mismatch[-1])
        planned_look = False
        if first_exposures is not None and planned_units is not None:
            at_looks = counts_at_planned_looks(first_exposures, arms, planned_units)
            planned_look = bool(spent_chi2_srm(at_looks, weights, alpha=SPENT_SRM_ALPHA)[-1])
        mismatch = mismatch or planned_look
        srm = SrmReport(
            observed,
            {arm: shares[arm] for arm in arms},
            float(fixed.statistic),
            float(fixed.p_value),
            float(sequential.p_value[-1]),
            mismatch,
        )
        if mismatch:
            problems.append(
                f"sample ratio mismatch: units {observed} against shares {srm.expected_shares} "
                f"(chi-square p = {srm.p_value:.2g}; sequential p = {srm.p_value_sequential:.2g}; "
                f"{'flagged at a planned look' if planned_look else 'flagged by the sequential test'})"
            )
    crossovers = data.counter(COUNTER_CROSSOVERS)
    if crossovers > MAX_CROSSOVER_SHARE * max(total, 1):
        problems.append(f"{crossovers} units were seen in more than one arm: assignment is not sticky")
    forced, excluded = data.counter(COUNTER_FORCED), data.counter(COUNTER_EXCLUDED)
    return Health(not problems, tuple(problems), srm, crossovers, forced, excluded, _unusable(data))


def _unusable(data: PhaseData) -> tuple[str, ...]:
    """What the analysis left out: it informs the reader, and blocks nothing (the metrics it touches
    have no value, so no decision rests on them)."""
    lines = [f"{line}: stored sums are not finite and are left out" for line in data.unusable]
    nonfinite = data.counter(COUNTER_NONFINITE_FEEDBACK)
    if nonfinite:
        lines.append(f"{nonfinite} feedback values were not finite and were left out")
    return tuple(lines)


@dataclass(frozen=True, slots=True)
class Planning:
    """The sample size the sequential test needs for the planned effect, and what remains of it."""

    planned_units: int
    more_units: int
    progress: float
    effect: float
    """The absolute effect planned for: mde (or MIN_RELATIVE_MDE) times the control's value."""


def plan_units(
    est_c: Estimate | None, est_t: Estimate | None, arms: int, settings: AnalysisSettings
) -> Planning | None:
    """Units (all arms) the sequential test needs to detect the pre-registered relative effect."""
    if est_c is None or est_t is None or est_c.n < 2 or est_t.n < 2:
        return None
    relative = settings.mde if settings.mde is not None else MIN_RELATIVE_MDE
    effect = relative * abs(est_c.value)
    std_c = est_c.standard_error * math.sqrt(est_c.n)
    std_t = est_t.standard_error * math.sqrt(est_t.n)
    if effect <= 0.0 or std_c <= 0.0 or std_t <= 0.0:
        return None
    per_arm = sequential_sample_size_means(std_c, std_t, effect, alpha=settings.alpha)
    so_far = min(est_c.n, est_t.n)
    return Planning(per_arm * arms, max(0, per_arm - so_far) * arms, so_far / per_arm, effect)


def _layer_reasons(comparisons: Sequence[Comparison]) -> tuple[list[str], list[str], list[str]]:
    """(better goals, worse goals, worse guardrails) as reasons."""
    goals = [c for c in comparisons if c.role == "goal"]
    better = [f"goal: {c.treatment} is better on {c.metric}" for c in goals if c.direction == "better"]
    worse = [f"goal: {c.treatment} is worse on {c.metric}" for c in goals if c.direction == "worse"]
    blocked = [
        f"guardrail: {c.treatment} is worse on {c.metric}, which blocks shipping"
        for c in comparisons
        if c.role != "goal" and c.direction == "worse"
    ]
    return better, worse, blocked


def decide(
    comparisons: Sequence[Comparison],
    health: Health,
    units: Mapping[str, int],
    settings: AnalysisSettings,
    planning: Planning | None,
) -> Verdict:
    """Goals decide, guardrails can block, health can invalidate; reasons in that order."""
    better, worse, blocked = _layer_reasons(comparisons)
    planned = (
        (planning.planned_units, planning.progress) if planning is not None and settings.mde else (None, None)
    )
    fewest = min(units.values()) if units else 0
    more: int | None = None
    if worse:
        action: Action = "roll_back"
        reasons = list(worse)
    elif fewest < settings.burn_in:
        action, reasons = "keep_running", [f"goal: fewer than {settings.burn_in} units in an arm"]
        more = (settings.burn_in - fewest) * max(len(units), 1)
    elif better:
        action, reasons = "ship", list(better)
    elif not any(c.role == "goal" for c in comparisons):
        action, reasons = "keep_running", ["goal: none configured, only guardrails are watched"]
    else:
        action, reasons = "keep_running", ["goal: no significant difference on the goal metrics yet"]
        more = planning.more_units if planning is not None else None
    if blocked:
        action, more = "roll_back", None
        reasons += blocked
    if not health.ok:
        action, more = "unhealthy", None
        reasons += [f"health: {problem}, which invalidates the results" for problem in health.problems]
    winner = None
    if action == "ship":
        ships = [c for c in comparisons if c.direction == "better" and c.role == "goal"]
        winner = max(ships, key=lambda c: abs(c.relative) if math.isfinite(c.relative) else 0.0).treatment
        reasons = [r for r in reasons if f" {winner} " in r]
    return Verdict(
        action, tuple(reasons), winner=winner, more_units=more, planned_units=planned[0], progress=planned[1]
    )

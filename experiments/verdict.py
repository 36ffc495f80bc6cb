"""Whether an experiment's data can be trusted, what to do about it, and how much longer to run.

Health: a sample ratio mismatch (sequential Dirichlet-multinomial test, so it may be checked at every
refresh) or units seen in several arms block any decision. The decision, in order: unhealthy; a
significant regression on a guardrail or goal rolls back; fewer than the burn-in units per arm keeps
running; a significant goal improvement with no regression ships; otherwise keep running, with the
units the sequential test still needs for the planning effect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.analysis_settings import AnalysisSettings
from experiments.estimates import Estimate
from experiments.stats import sequential_sample_size_means, sequential_srm, srm_chi2
from experiments.stats.srm import DEFAULT_SRM_ALPHA
from experiments.status import Comparison, Health, SrmReport, Verdict
from experiments.store.base import (
    COUNTER_CROSSOVERS,
    COUNTER_EXCLUDED,
    COUNTER_FORCED,
    COUNTER_NONFINITE_FEEDBACK,
    PhaseData,
)

# More than 1 % of units seen in two arms means stickiness is broken (a cookie lost, ids mixed).
MAX_CROSSOVER_SHARE = 0.01
# "Keep running" plans for the larger of the observed effect and this relative effect on the control:
# a 2 % change is about the smallest that inference-service experiments act on.
MIN_RELATIVE_MDE = 0.02


def check_health(data: PhaseData, shares: Mapping[str, float]) -> Health:
    problems: list[str] = []
    srm = None
    arms = [arm for arm, share in shares.items() if share > 0.0]
    observed = {arm: data.arm(arm).units for arm in arms}
    total = sum(observed.values())
    if len(arms) >= 2 and total > 0:
        counts = np.array([observed[arm] for arm in arms], dtype=np.float64)
        weights = np.array([shares[arm] for arm in arms], dtype=np.float64)
        fixed = srm_chi2(counts, weights)
        sequential = sequential_srm(counts.reshape(1, -1), weights)
        mismatch = bool(sequential.mismatch[-1])
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
                f"(sequential p = {srm.p_value_sequential:.2g} <= {DEFAULT_SRM_ALPHA})"
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


def more_units_needed(
    item: Comparison, est_c: Estimate | None, est_t: Estimate | None, arms: int, alpha: float
) -> int | None:
    """Units (all arms) still needed for the sequential test to detect the planning effect."""
    if est_c is None or est_t is None or est_c.n < 2 or est_t.n < 2:
        return None
    mde = max(
        abs(item.difference) if math.isfinite(item.difference) else 0.0, MIN_RELATIVE_MDE * abs(est_c.value)
    )
    std_c = est_c.standard_error * math.sqrt(est_c.n)
    std_t = est_t.standard_error * math.sqrt(est_t.n)
    if mde <= 0.0 or std_c <= 0.0 or std_t <= 0.0:
        return None
    needed = sequential_sample_size_means(std_c, std_t, mde, alpha=alpha)
    return max(0, needed - min(est_c.n, est_t.n)) * arms


def decide(
    comparisons: Sequence[Comparison],
    health: Health,
    units: Mapping[str, int],
    settings: AnalysisSettings,
    planning: int | None,
) -> Verdict:
    if not health.ok:
        return Verdict("unhealthy", health.problems)
    worse = [c for c in comparisons if c.direction == "worse"]
    if worse:
        return Verdict("roll_back", tuple(f"{c.treatment} is worse on {c.metric}" for c in worse))
    fewest = min(units.values()) if units else 0
    if fewest < settings.burn_in:
        needed = (settings.burn_in - fewest) * max(len(units), 1)
        return Verdict("keep_running", (f"fewer than {settings.burn_in} units in an arm",), more_units=needed)
    better = [c for c in comparisons if c.direction == "better" and c.role == "goal"]
    if better:
        winner = max(better, key=lambda c: abs(c.relative) if math.isfinite(c.relative) else 0.0).treatment
        reasons = tuple(f"{c.treatment} is better on {c.metric}" for c in better if c.treatment == winner)
        return Verdict("ship", reasons, winner=winner)
    if not any(c.role == "goal" for c in comparisons):
        return Verdict("keep_running", ("no goal metric: only guardrails are watched",))
    return Verdict(
        "keep_running", ("no significant difference on the goal metrics yet",), more_units=planning
    )

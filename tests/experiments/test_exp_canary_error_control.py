"""Canary error control over the whole rollout (issue 17, fix 2), by simulation.

Before: each step tested every guardrail at the full alpha (the running minimum p restarting at each
step), so a rollout of K steps and G guardrails could roll back a good candidate with probability up
to alpha * K * G; and a candidate past its limit advanced whenever its point estimate happened to dip
under the limit. Now each step gets alpha/K, guardrails are Holm-adjusted within the step, and the
advance waits until the one-sided confidence bound, not the estimate, is within the limit.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.config import GuardrailConfig
from experiments.guardrails import evaluate_guardrail, holm_across, step_level
from experiments.stats import SequentialSettings, proportion_difference_looks, sequential_test
from experiments.store.base import UNIT_ERRORS, UNIT_REQUESTS, ArmData, PhaseData

ALPHA = 0.05
STEPS = (1.0, 5.0, 25.0, 50.0, 100.0)  # four steps compare; the last is the promotion
GUARDRAILS = 3
RUNS = 4000
LOOKS = 30
UNITS_PER_LOOK = 40


def _false_rollbacks(level: float, holm_adjusted: bool, rng: np.random.Generator) -> float:
    """Share of A/A rollouts (candidate exactly at every limit) rolled back at some step."""
    tested = sum(1 for percent in STEPS if percent < 100.0)
    rolled = np.zeros(RUNS, dtype=bool)
    settings = SequentialSettings(n_star=2 * LOOKS * UNITS_PER_LOOK, alpha=level, alternative="greater")
    for _ in range(tested):
        p_min = np.empty((RUNS, GUARDRAILS))
        for g in range(GUARDRAILS):
            n = np.arange(1, LOOKS + 1) * UNITS_PER_LOOK
            a = np.cumsum(rng.binomial(UNITS_PER_LOOK, 0.2, (RUNS, LOOKS)), axis=1)
            b = np.cumsum(rng.binomial(UNITS_PER_LOOK, 0.2, (RUNS, LOOKS)), axis=1)
            result = sequential_test(proportion_difference_looks(a, n, b, n), settings)
            p_min[:, g] = result.p_value[:, -1]  # running minimum over the step's looks
        if holm_adjusted:
            ordered = np.sort(p_min, axis=1) * (GUARDRAILS - np.arange(GUARDRAILS))
            adjusted_min = np.maximum.accumulate(ordered, axis=1)[:, 0]  # Holm's smallest adjusted p
            rolled |= adjusted_min <= level
        else:
            rolled |= (p_min <= level).any(axis=1)
    return float(rolled.mean())


def test_a_good_candidate_is_rolled_back_at_most_alpha_over_every_step_and_guardrail() -> None:
    rng = np.random.default_rng(17)
    level = step_level(ALPHA, STEPS)
    assert level == ALPHA / 4
    before = _false_rollbacks(ALPHA, holm_adjusted=False, rng=rng)
    now = _false_rollbacks(level, holm_adjusted=True, rng=rng)
    assert now <= ALPHA + 3.0 * math.sqrt(ALPHA * (1.0 - ALPHA) / RUNS)
    assert before > 1.5 * now  # the harness sees the inflation across steps and guardrails


def _arm(name: str, errors_per_unit: np.ndarray, requests: int) -> ArmData:
    units = errors_per_unit.size
    sums = {
        f"s:{UNIT_ERRORS}": float(errors_per_unit.sum()),
        f"ss:{UNIT_ERRORS}": float((errors_per_unit**2).sum()),
        f"s:{UNIT_REQUESTS}": float(units * requests),
        f"ss:{UNIT_REQUESTS}": float(units * requests**2),
        f"x:{UNIT_ERRORS}|{UNIT_REQUESTS}": float(errors_per_unit.sum() * requests),
    }
    return ArmData(name, units=units, exposures=units * requests, unit_sums=sums)


def test_a_candidate_past_its_limit_never_advances_on_a_lucky_estimate() -> None:
    """2 % errors against 0 % with a 1-point limit, at a step's 200 candidate units: the point
    estimate dips under the limit in some runs; the confidence bound keeps every run from advancing."""
    rng = np.random.default_rng(40)
    guardrail = GuardrailConfig.model_validate({"metric": "error_rate", "max_increase": 0.01})
    level = step_level(ALPHA, STEPS)
    lucky = advanced = 0
    for _ in range(400):
        requests = 2
        candidate = rng.binomial(requests, 0.02, 200).astype(np.float64)
        baseline = np.zeros(3000)
        data = PhaseData("c", 0, {"baseline": _arm("baseline", baseline, requests),
                                  "candidate": _arm("candidate", candidate, requests)})  # fmt: skip
        result = evaluate_guardrail(
            guardrail, data, baseline_arm="baseline", candidate_arm="candidate",
            alpha=level, n_star=3200, burn_in=100,
        )  # fmt: skip
        (result,) = holm_across([result], level)
        lucky += result.tested <= 0.01
        advanced += result.status == "holds"
    assert lucky > 10  # the point estimate alone would have let these advance
    assert advanced == 0

"""Canary error control over the whole rollout (issue 17, fix 2), by simulation.

Each step's mixture likelihood ratio is chained into the next (one always-valid test over every
step, at the full alpha), error rates are tested with their variance at the null (a score test), and
the guardrails are Holm-adjusted. The worst case is a candidate exactly at its limit on every
guardrail, watched at every look of every step: it must be rolled back in at most alpha of the
rollouts. And a candidate past its limit must not advance on a lucky point estimate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from experiments.config import GuardrailConfig
from experiments.guardrails import MIN_NULL_ERRORS, evaluate_guardrail, holm_across
from experiments.stats import Looks, SequentialSettings, log_likelihood_ratios
from experiments.stats.restricted import restricted_rate_standard_error
from experiments.store.base import UNIT_ERRORS, UNIT_REQUESTS, ArmData, PhaseData

ALPHA = 0.05
STEPS = 3  # steps that compare (10, 25, 50 %); the last, 100 %, is the promotion
GUARDRAILS = 2
RUNS = 4000
LOOKS = 30
CANDIDATE_PER_LOOK = 40
BASELINE_PER_LOOK = 360  # a 10 % step
LIMIT = 0.01  # max_increase of the error rate


def _false_rollbacks(baseline_rate: float, rng: np.random.Generator, *, naive: bool = False) -> float:
    """Share of rollouts rolled back with the candidate exactly at its limit on every guardrail.

    `naive`: a fixed-horizon one-sided z test at every look instead, to show the harness sees
    what peeking costs."""
    candidate_rate = baseline_rate + LIMIT
    n_c = np.arange(1, LOOKS + 1) * float(CANDIDATE_PER_LOOK)
    n_b = np.arange(1, LOOKS + 1) * float(BASELINE_PER_LOOK)
    settings = SequentialSettings(
        n_star=float(n_c[-1] + n_b[-1]), alpha=ALPHA, alternative="greater", null=LIMIT
    )
    best = np.ones((RUNS, GUARDRAILS))
    carried = np.zeros((RUNS, GUARDRAILS))
    for _ in range(STEPS):
        for g in range(GUARDRAILS):
            x_b = np.cumsum(rng.binomial(BASELINE_PER_LOOK, baseline_rate, (RUNS, LOOKS)), axis=1)
            x_c = np.cumsum(rng.binomial(CANDIDATE_PER_LOOK, candidate_rate, (RUNS, LOOKS)), axis=1)
            se, p_null = restricted_rate_standard_error(x_b, n_b, x_c, n_c, ratio=1.0, increase=LIMIT)
            se = np.where(p_null * n_c >= MIN_NULL_ERRORS, se, np.nan)
            shape = x_c.shape
            looks = Looks(
                x_c / n_c - x_b / n_b, se, np.broadcast_to(n_b + n_c, shape), np.broadcast_to(n_c, shape)
            )
            log_lr = log_likelihood_ratios(looks, settings)
            total = carried[:, g : g + 1] + log_lr
            if naive:
                z = np.nan_to_num((looks.estimate - LIMIT) / se, nan=-np.inf)
                total = -np.log(special.ndtr(-z))
            best[:, g] = np.minimum(best[:, g], np.exp(-np.maximum(total, 0.0)).min(axis=1))
            carried[:, g] += log_lr[:, -1]
    # Holm rolls back at a tick when the smallest running-minimum p is <= alpha / guardrails.
    return float((best.min(axis=1) <= ALPHA / GUARDRAILS).mean())


def test_a_candidate_at_its_limit_is_rolled_back_at_most_alpha_over_every_step_and_guardrail() -> None:
    rng = np.random.default_rng(17)
    slack = 3.0 * math.sqrt(ALPHA * (1.0 - ALPHA) / RUNS)
    for baseline_rate in (0.0, 0.01, 0.05):
        rate = _false_rollbacks(baseline_rate, rng)
        assert rate <= ALPHA + slack, (baseline_rate, rate)
    assert _false_rollbacks(0.05, rng, naive=True) > 3.0 * ALPHA  # the harness sees peeking


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
    level = ALPHA
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

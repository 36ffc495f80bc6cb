"""Planning by a pre-registered minimum detectable effect (issue 17, fix 5), by simulation.

Planning on the observed effect ranged from 8k to 1.27M units across A/A runs, and followed for a
real +5 % effect it reached "ship" in 36 % of runs. Planned for `mde: 0.05`, the sample size depends
only on the variance, and the sequential test run to it finds a real +5 % effect at about the
planned 80 % power.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.analysis_settings import AnalysisSettings
from experiments.estimates import Estimate
from experiments.stats import SequentialSettings, mean_difference_looks, sequential_test
from experiments.verdict import plan_units

RUNS = 2000
LOOKS = 20
MEAN, SD = 1.0, 2.0  # a heavy-ish per-unit metric: revenue per user with sd twice the mean


def _plan(rng: np.random.Generator, effect: float, units: int) -> int:
    control = rng.normal(MEAN, SD, units)
    treatment = rng.normal(MEAN * (1.0 + effect), SD, units)
    found = plan_units(
        Estimate(float(control.mean()), float(control.std(ddof=1)) / math.sqrt(units), units),
        Estimate(float(treatment.mean()), float(treatment.std(ddof=1)) / math.sqrt(units), units),
        2,
        AnalysisSettings(mde=0.05),
    )
    assert found is not None
    return found.planned_units


def test_the_plan_does_not_follow_the_noise_of_an_aa_test() -> None:
    rng = np.random.default_rng(9)
    plans = np.array([_plan(rng, 0.0, 5000) for _ in range(200)])
    assert plans.max() / plans.min() < 1.5  # observed-effect planning: 8k to 1.27M


def test_the_sequential_test_run_to_the_plan_finds_the_planned_effect() -> None:
    rng = np.random.default_rng(10)
    planned = _plan(rng, 0.05, 5000)
    per_arm = planned // 2
    step = per_arm // LOOKS
    n = np.arange(1, LOOKS + 1) * step
    sums_c = np.cumsum(rng.normal(step * MEAN, math.sqrt(step) * SD, (RUNS, LOOKS)), axis=1)
    sums_t = np.cumsum(rng.normal(step * MEAN * 1.05, math.sqrt(step) * SD, (RUNS, LOOKS)), axis=1)
    looks = mean_difference_looks(n, sums_c / n, SD**2, n, sums_t / n, SD**2)
    result = sequential_test(looks, SequentialSettings(n_star=2 * per_arm, alpha=0.05))
    power = float(result.reject[:, -1].mean())
    assert power >= 0.78 - 3.0 * math.sqrt(0.8 * 0.2 / RUNS)

"""CUPED: the variance it removes is about rho^2, and the adjusted interval keeps its coverage."""

from __future__ import annotations

import math

import numpy as np

from experiments.stats.cuped import cuped_difference

RUNS = 2000
UNITS = 500
RHO = 0.7
EFFECT = 0.1


def test_cuped_covers_the_effect_and_removes_about_rho_squared_of_the_variance() -> None:
    rng = np.random.default_rng(21)
    covered = 0
    reductions = []
    for _ in range(RUNS):
        pre = rng.normal(0.0, 1.0, (2, UNITS))
        noise = rng.normal(0.0, 1.0, (2, UNITS))
        during = RHO * pre + math.sqrt(1.0 - RHO**2) * noise
        during[1] += EFFECT
        pre[:, :50] = np.nan  # new units: no pre-period
        result = cuped_difference(during[0], pre[0], during[1], pre[1])
        assert result is not None
        covered += result.ci_low <= EFFECT <= result.ci_high
        reductions.append(result.variance_reduction)
    assert covered / RUNS >= 0.94 - 3.0 * math.sqrt(0.95 * 0.05 / RUNS)
    # 90 % of units carry the covariate: the reduction is about 0.9 rho^2.
    assert abs(float(np.mean(reductions)) - 0.9 * RHO**2) < 0.05


def test_without_enough_pre_period_there_is_no_cuped() -> None:
    values = np.ones(100)
    assert cuped_difference(values, np.full(100, np.nan), values, np.full(100, np.nan)) is None

"""Relative intervals on the log scale cover B/A - 1 where the symmetric delta-method one does not."""

from __future__ import annotations

import math

import numpy as np

from experiments.stats import RatioSummary, ratio_difference
from experiments.stats.relative import log_relative_interval

RUNS = 4000
ALPHA = 0.05


def test_log_scale_relative_interval_covers_a_small_rate_and_stays_above_minus_one() -> None:
    """Error rates 1 % vs 2 % with 800 units per arm: the log interval covers +100 % at >= 0.94."""
    rng = np.random.default_rng(5)
    units, rate_a, rate_b = 800, 0.01, 0.02
    truth = rate_b / rate_a - 1.0
    covered_log = covered_symmetric = 0
    lows = []
    for _ in range(RUNS):
        errors_a = rng.binomial(1, rate_a, units).astype(np.float64)
        errors_b = rng.binomial(1, rate_b, units).astype(np.float64)
        if errors_a.sum() == 0:
            continue  # no control errors: no ratio to speak of, in either method
        ones = np.ones(units)
        summary_a, summary_b = (
            RatioSummary.from_units(errors_a, ones),
            RatioSummary.from_units(errors_b, ones),
        )
        symmetric = ratio_difference(summary_a, summary_b, relative=True, alpha=ALPHA)
        covered_symmetric += float(symmetric.ci_low) <= truth <= float(symmetric.ci_high)
        se_a = math.sqrt(float(summary_a.ratio_variance))
        se_b = math.sqrt(float(summary_b.ratio_variance))
        low, high = log_relative_interval(
            float(summary_a.ratio), se_a, float(summary_b.ratio), se_b, alpha=ALPHA
        )
        if math.isfinite(low):
            lows.append(low)
            covered_log += low <= truth <= high
    assert covered_log / RUNS >= 0.94
    assert covered_symmetric / RUNS < covered_log / RUNS
    assert min(lows) > -1.0


def test_log_relative_interval_needs_positive_values() -> None:
    assert all(math.isnan(v) for v in log_relative_interval(0.0, 0.1, 1.0, 0.1))
    low, high = log_relative_interval(1.0, 0.0, 1.1, 0.0)
    assert low == high and abs(low - 0.1) < 1e-12

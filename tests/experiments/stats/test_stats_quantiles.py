"""Deng-Knoblich-Yu quantile intervals: exact ranks, the minimum-n rule, check C8, clustered units."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import min_sample_size, quantile_ci, quantile_difference_ci

Z95 = float(sps.norm.isf(0.025))


def test_interval_takes_the_documented_order_statistics() -> None:
    values = np.arange(1.0, 1001.0)[::-1].copy()  # the rank of a value is the value: easy to read
    result = quantile_ci(values, 0.5)
    half = Z95 * math.sqrt(1000 * 0.5 * 0.5)
    assert result.enough_data
    assert result.estimate == 500.0
    assert result.ci_low == math.floor(500 - half)
    assert result.ci_high == math.ceil(500 + half)
    assert result.standard_error == pytest.approx((result.ci_high - result.ci_low) / (2 * Z95))


@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.99])
def test_estimate_is_numpy_inverted_cdf_quantile(q: float) -> None:
    values = np.random.default_rng(1).lognormal(size=2_001)
    assert quantile_ci(values, q).estimate == float(np.quantile(values, q, method="inverted_cdf"))


def test_minimum_sample_size_is_enforced_not_crashed_on() -> None:
    n_min = min_sample_size(0.99)
    assert 375 <= n_min <= 385  # STATISTICS.md: n > z^2 q/(1-q), about 380 at p99
    rng = np.random.default_rng(2)
    assert quantile_ci(rng.lognormal(size=n_min), 0.99).enough_data
    short = quantile_ci(rng.lognormal(size=n_min - 1), 0.99)
    assert not short.enough_data
    assert math.isnan(short.ci_low) and math.isnan(short.standard_error)
    assert math.isfinite(short.estimate)
    empty = quantile_ci(np.array([]), 0.5)
    assert not empty.enough_data and math.isnan(empty.estimate)


def test_difference_with_too_little_data_is_flagged() -> None:
    rng = np.random.default_rng(3)
    result = quantile_difference_ci(rng.lognormal(size=5_000), rng.lognormal(size=100), 0.99)
    assert not result.enough_data
    assert result.control.enough_data and not result.treatment.enough_data
    assert math.isnan(result.difference.p_value)


def test_difference_combines_the_arms_standard_errors() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.lognormal(3.0, 0.5, 3_000), rng.lognormal(3.2, 0.5, 3_000)
    result = quantile_difference_ci(a, b, 0.5)
    se = math.hypot(float(result.control.standard_error), float(result.treatment.standard_error))
    assert result.difference.standard_error == pytest.approx(se)
    assert result.difference.estimate == pytest.approx(result.treatment.estimate - result.control.estimate)
    assert result.difference.p_value < 1e-6  # exp(0.2) - 1 = 22 % slower at the median


def test_vectorised_runs_equal_single_calls() -> None:
    samples = np.random.default_rng(5).exponential(size=(4, 1_000))
    together = quantile_ci(samples, 0.9)
    for run in range(4):
        alone = quantile_ci(samples[run], 0.9)
        assert np.asarray(together.ci_low)[run] == alone.ci_low
        assert np.asarray(together.ci_high)[run] == alone.ci_high


def test_clustered_interval_reduces_to_the_independent_one_for_singleton_units() -> None:
    values = np.random.default_rng(6).lognormal(size=4_000)
    plain = quantile_ci(values, 0.9)
    clustered = quantile_ci(values, 0.9, unit_ids=np.arange(values.size))
    # Only the ddof of the variance differs (n - 1 vs n): the ranks move by at most one.
    ordered = np.sort(values)
    low_ranks = np.searchsorted(ordered, [float(plain.ci_low), float(clustered.ci_low)])
    high_ranks = np.searchsorted(ordered, [float(plain.ci_high), float(clustered.ci_high)])
    assert abs(int(low_ranks[1] - low_ranks[0])) <= 1
    assert abs(int(high_ranks[1] - high_ranks[0])) <= 1
    with pytest.raises(ValueError):
        quantile_ci(values, 0.9, unit_ids=np.arange(10))


@pytest.mark.parametrize("q", [0.5, 0.99])
def test_c8_quantile_interval_coverage_for_lognormal_latency(q: float) -> None:
    """C8: p50/p99 interval coverage within 0.93-0.97 for lognormal latency, n = 2,000 per arm."""
    runs, n, chunk = 4_000, 2_000, 1_000
    mu_a, sigma_a, mu_b, sigma_b = 3.0, 0.5, 3.05, 0.6
    true_a = math.exp(mu_a + sigma_a * float(sps.norm.ppf(q)))
    true_b = math.exp(mu_b + sigma_b * float(sps.norm.ppf(q)))
    rng = np.random.default_rng(8)
    covered_arm = covered_difference = 0
    for _ in range(runs // chunk):
        result = quantile_difference_ci(
            rng.lognormal(mu_a, sigma_a, (chunk, n)), rng.lognormal(mu_b, sigma_b, (chunk, n)), q
        )
        assert result.enough_data
        low, high = np.asarray(result.control.ci_low), np.asarray(result.control.ci_high)
        covered_arm += int(np.sum((low <= true_a) & (true_a <= high)))
        low, high = np.asarray(result.difference.ci_low), np.asarray(result.difference.ci_high)
        covered_difference += int(np.sum((low <= true_b - true_a) & (true_b - true_a <= high)))
    arm_coverage, difference_coverage = covered_arm / runs, covered_difference / runs
    print("arm_coverage =", arm_coverage)
    print("difference_coverage =", difference_coverage)
    assert 0.93 <= arm_coverage <= 0.97
    assert 0.93 <= difference_coverage <= 0.97


@pytest.mark.parametrize("q", [0.5, 0.9])
def test_clustered_interval_covers_when_requests_share_a_user(q: float) -> None:
    """Each user has a latency level shared by their ~10 requests: the unit-aware interval keeps its
    coverage, the one that treats requests as independent does not."""
    runs, users = 1_500, 400
    rng = np.random.default_rng(3)
    truth = math.exp(math.sqrt(0.5) * float(sps.norm.ppf(q)))  # log latency ~ N(0, 0.25 + 0.25)
    covered = naive_covered = 0
    for _ in range(runs):
        unit_ids = np.repeat(np.arange(users), 1 + rng.poisson(9, users))
        latency = np.exp(rng.normal(0.0, 0.5, users)[unit_ids] + rng.normal(0.0, 0.5, unit_ids.size))
        clustered = quantile_ci(latency, q, unit_ids=unit_ids)
        naive = quantile_ci(latency, q)
        covered += bool(clustered.ci_low <= truth <= clustered.ci_high)
        naive_covered += bool(naive.ci_low <= truth <= naive.ci_high)
    print("clustered_coverage =", covered / runs)
    print("naive_coverage =", naive_covered / runs)
    assert covered / runs >= 0.92  # nominal 0.95; 0.92 is four Monte Carlo sd below it at 1,500 runs
    assert naive_covered / runs < 0.85

"""Sample ratio mismatch (chi-square and sequential) and the canary count test; check C7."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import (
    SequentialSrmState,
    canary_count_test,
    dirichlet_multinomial_log_bayes_factor,
    sequential_srm,
    srm_chi2,
)
from experiments.stats._arrays import IntArray

SRM_ALPHA = 0.001


def arrivals(rng: np.random.Generator, runs: int, units: int, share_b: float) -> IntArray:
    """Cumulative (A, B) counts after each arriving unit: shape (runs, units, 2)."""
    in_b = np.cumsum(rng.random((runs, units)) < share_b, axis=1)
    seen = np.arange(1, units + 1)
    return np.stack([seen - in_b, in_b], axis=-1).astype(np.int64)


def test_chi2_matches_scipy_chisquare() -> None:
    observed, weights = np.array([5210, 4790, 1020]), np.array([45.0, 45.0, 10.0])
    result = srm_chi2(observed, weights)
    expected = observed.sum() * weights / weights.sum()
    reference = sps.chisquare(observed, expected)
    assert result.statistic == pytest.approx(float(reference.statistic))
    assert result.p_value == pytest.approx(float(reference.pvalue))
    assert result.degrees_of_freedom == 2
    assert result.mismatch is True  # p ~ 4e-5


def test_chi2_accepts_a_healthy_split_and_vectorises_over_looks() -> None:
    result = srm_chi2(np.array([[50, 50], [5030, 4970]]), [1, 1])
    assert isinstance(result.mismatch, np.ndarray)
    assert not result.mismatch.any()


def test_log_bayes_factor_equals_beta_binomial_over_binomial() -> None:
    # Two arms: the Dirichlet-multinomial marginal is the beta-binomial; binomial coefficients cancel.
    x_a, x_b, share_b, concentration = 430, 570, 0.5, 100.0
    n = x_a + x_b
    expected = sps.betabinom.logpmf(x_b, n, concentration * share_b, concentration * (1 - share_b)) - (
        sps.binom.logpmf(x_b, n, share_b)
    )
    ours = dirichlet_multinomial_log_bayes_factor([x_a, x_b], [1, 1], prior_concentration=concentration)
    assert ours == pytest.approx(float(expected), rel=1e-9)


def test_sequential_srm_accepts_increments_or_cumulative_counts() -> None:
    increments = np.array([[10, 12], [40, 61], [30, 70], [5, 90]])
    cumulative = np.cumsum(increments, axis=0)
    a = sequential_srm(increments, [1, 1], increments=True)
    b = sequential_srm(cumulative, [1, 1])
    assert np.allclose(a.log_bayes_factor, b.log_bayes_factor)
    assert np.all(np.diff(a.p_value) <= 0.0)
    assert a.first_mismatch == int(np.argmax(a.p_value <= SRM_ALPHA))


def test_state_updates_agree_with_the_batch_test_and_the_flag_sticks() -> None:
    increments = [(10, 12), (40, 61), (30, 70), (5, 90), (500, 480)]
    batch = sequential_srm(np.array(increments), [1, 1], increments=True)
    state = SequentialSrmState.start([1, 1])
    seen = []
    for step in increments:
        state = state.update(step)
        seen.append(state.p_value)
    assert np.allclose(seen, batch.p_value)
    assert state.counts == (585, 713)
    assert state.mismatch  # the balanced last batch does not clear an earlier mismatch
    assert state.observed_over_expected[1] > 1.0
    with pytest.raises(ValueError):
        state.update((1, 2, 3))


def test_weights_are_validated() -> None:
    with pytest.raises(ValueError):
        srm_chi2([10, 10], [1, 0])
    with pytest.raises(ValueError):
        sequential_srm(np.array([[1, 2]]), [1, 1, 1])
    with pytest.raises(ValueError):
        SequentialSrmState.start([1.0])


def test_c7_sequential_srm_under_continuous_checking() -> None:
    """C7: checked after every unit up to 2,000 units, FPR <= 0.001-ish (the alpha + 3 sd rule at
    R = 10,000), while chi-square checked 100 times is many times its nominal 0.001."""
    runs, units, chunk = 10_000, 2_000, 1_000
    rng = np.random.default_rng(5)
    sequential_alarms = chi2_alarms = 0
    for _ in range(runs // chunk):
        counts = arrivals(rng, chunk, units, 0.5)
        sequential_alarms += int(np.sum(sequential_srm(counts, [1, 1], alpha=SRM_ALPHA).mismatch[:, -1]))
        looks = counts[:, units // 100 - 1 :: units // 100]
        chi2_alarms += int(np.sum(np.any(np.asarray(srm_chi2(looks, [1, 1]).mismatch), axis=1)))
    sequential_fpr, chi2_fpr = sequential_alarms / runs, chi2_alarms / runs
    print("sequential_fpr =", sequential_fpr)
    print("chi2_checked_100_times_fpr =", chi2_fpr)
    assert sequential_fpr <= SRM_ALPHA + 3 * math.sqrt(SRM_ALPHA * (1 - SRM_ALPHA) / runs)
    assert chi2_fpr >= 5 * SRM_ALPHA


def test_c7_sequential_srm_detects_a_55_45_split_within_2000_units() -> None:
    """C7: a 55/45 split is flagged within ~2,000 units in most runs (and almost always by 4,000)."""
    runs, chunk = 2_000, 500
    rng = np.random.default_rng(55)
    first_flags = []
    for _ in range(runs // chunk):
        result = sequential_srm(arrivals(rng, chunk, 4_000, 0.55), [1, 1], alpha=SRM_ALPHA)
        first_flags.append(np.asarray(result.first_mismatch))
    first = np.concatenate(first_flags)
    units_to_flag = np.where(first >= 0, first + 1, np.iinfo(np.int64).max)
    within_2000 = float(np.mean(units_to_flag <= 2_000))
    within_4000 = float(np.mean(units_to_flag <= 4_000))
    print("detected_within_2000 =", within_2000)
    print("detected_within_4000 =", within_4000)
    print("median_units_to_flag =", float(np.median(units_to_flag)))
    assert within_2000 > 0.5
    assert within_4000 > 0.95


def test_canary_count_test_holds_its_level_when_traffic_volume_swings() -> None:
    """Equal error rates, a 10 % canary, traffic that swings 20x between intervals: FPR <= alpha + 3 sd."""
    runs, intervals, alpha, error_rate = 4_000, 200, 0.05, 0.02
    rng = np.random.default_rng(9)
    traffic = rng.choice([50, 1_000], size=(runs, intervals))
    canary_requests = rng.binomial(traffic, 0.1)
    errors = np.stack(
        [rng.binomial(traffic - canary_requests, error_rate), rng.binomial(canary_requests, error_rate)],
        axis=-1,
    )
    result = canary_count_test(errors, [90, 10], alpha=alpha, increments=True)
    fpr = float(np.mean(np.asarray(result.p_value)[:, -1] <= alpha))
    print("canary_count_fpr =", fpr)
    assert fpr <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    worse_alarms = float(np.mean(np.asarray(result.candidate_worse).any(axis=-1)))
    assert worse_alarms <= fpr  # the one-sided alarm is a subset of the two-sided one


def test_canary_count_test_catches_a_doubled_error_rate() -> None:
    runs, intervals, alpha = 1_000, 100, 0.05
    rng = np.random.default_rng(10)
    canary_requests = rng.binomial(500, 0.1, size=(runs, intervals))
    errors = np.stack(
        [rng.binomial(500 - canary_requests, 0.02), rng.binomial(canary_requests, 0.04)], axis=-1
    )
    result = canary_count_test(errors, [90, 10], alpha=alpha, increments=True)
    caught = float(np.mean(np.asarray(result.candidate_worse)[:, -1]))
    print("doubled_error_rate_caught =", caught)
    assert caught > 0.9
    assert np.nanmedian(np.asarray(result.rate_ratio)[:, -1]) == pytest.approx(2.0, rel=0.1)
    # A canary with fewer errors is a mismatch, but not an alarm for "is the canary worse".
    healthier = np.stack(
        [rng.binomial(500 - canary_requests, 0.04), rng.binomial(canary_requests, 0.01)], axis=-1
    )
    better = canary_count_test(healthier, [90, 10], alpha=alpha, increments=True)
    assert np.mean(np.asarray(better.p_value)[:, -1] <= alpha) > 0.9
    assert not np.asarray(better.candidate_worse).any()

"""Fixed-horizon tests: Welch t, two proportions (z and Fisher), Newcombe's interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import proportion_difference_ci, two_proportion_test, welch_t
from experiments.stats._arrays import Alternative, FloatArray


def test_welch_matches_scipy_from_stats() -> None:
    result = welch_t(20, 1.0, 2.0, 30, 1.5, 0.5)
    reference = sps.ttest_ind_from_stats(1.5, np.sqrt(0.5), 30, 1.0, np.sqrt(2.0), 20, equal_var=False)
    assert result.statistic == pytest.approx(float(reference.statistic), rel=1e-12)
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-12)
    assert result.estimate == pytest.approx(0.5)


def test_welch_matches_scipy_on_raw_samples_and_its_interval() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(10.0, 1.0, 15), rng.normal(11.0, 3.0, 40)
    result = welch_t(a.size, a.mean(), a.var(ddof=1), b.size, b.mean(), b.var(ddof=1))
    reference = sps.ttest_ind(b, a, equal_var=False)
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-10)
    interval = reference.confidence_interval(0.95)
    assert result.ci_low == pytest.approx(float(interval.low), rel=1e-10)
    assert result.ci_high == pytest.approx(float(interval.high), rel=1e-10)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_welch_one_sided_matches_scipy(alternative: Alternative) -> None:
    reference = sps.ttest_ind_from_stats(1.2, 1.0, 25, 1.0, 1.5, 25, equal_var=False, alternative=alternative)
    result = welch_t(25, 1.0, 2.25, 25, 1.2, 1.0, alternative=alternative)
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-10)
    if alternative == "greater":
        assert result.ci_high == np.inf and np.isfinite(result.ci_low)
    else:
        assert result.ci_low == -np.inf and np.isfinite(result.ci_high)


def test_welch_is_vectorised() -> None:
    means_b = np.array([1.0, 1.2, 2.0])
    result = welch_t(50, 1.0, 1.0, 50, means_b, 1.0)
    assert isinstance(result.p_value, np.ndarray) and result.p_value.shape == (3,)
    single = welch_t(50, 1.0, 1.0, 50, 1.2, 1.0)
    assert result.p_value[1] == pytest.approx(single.p_value)
    assert result.p_value[0] == pytest.approx(1.0)
    assert np.all(np.diff(result.p_value) < 0.0)


def test_welch_rejects_impossible_inputs() -> None:
    with pytest.raises(ValueError):
        welch_t(1, 0.0, 1.0, 10, 0.0, 1.0)
    with pytest.raises(ValueError):
        welch_t(10, 0.0, -1.0, 10, 0.0, 1.0)
    with pytest.raises(ValueError):
        welch_t(10, 0.0, 1.0, 10, 0.0, 1.0, alpha=1.5)


def test_welch_with_no_spread_at_all_is_not_evidence() -> None:
    result = welch_t(10, 3.0, 0.0, 10, 3.0, 0.0)
    assert result.p_value == 1.0
    assert result.statistic == 0.0


def test_pooled_z_for_large_counts_matches_hand_computation() -> None:
    result = two_proportion_test(300, 2000, 350, 2000)
    pooled = 650 / 4000
    z = (350 / 2000 - 300 / 2000) / np.sqrt(pooled * (1 - pooled) * (2 / 2000))
    assert not result.exact
    assert result.statistic == pytest.approx(z)
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(z)))


def test_fisher_exact_is_used_when_an_expected_cell_is_below_five() -> None:
    # Pooled rate 11/45: expected successes in A = 20 * 11/45 = 4.9 < 5.
    result = two_proportion_test(3, 20, 8, 25)
    assert result.exact
    reference = sps.fisher_exact([[8, 17], [3, 17]])
    assert result.p_value == pytest.approx(float(reference.pvalue))
    one_sided = two_proportion_test(3, 20, 8, 25, alternative="greater")
    assert one_sided.p_value == pytest.approx(float(sps.fisher_exact([[8, 17], [3, 17]], "greater").pvalue))


def test_fisher_runs_only_on_small_elements_of_a_vector() -> None:
    result = two_proportion_test([3, 300], [20, 2000], [8, 350], [25, 2000])
    assert isinstance(result.exact, np.ndarray)
    assert result.exact.tolist() == [True, False]
    p_values: FloatArray = np.asarray(result.p_value)
    assert p_values[0] == pytest.approx(two_proportion_test(3, 20, 8, 25).p_value)
    assert p_values[1] == pytest.approx(two_proportion_test(300, 2000, 350, 2000).p_value)


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Table II, example (a): 56/70 - 48/80, method 10 gives 0.0524 to 0.3339.
    low, high = proportion_difference_ci(48, 80, 56, 70)
    assert low == pytest.approx(0.0524, abs=5e-5)
    assert high == pytest.approx(0.3339, abs=5e-5)


def test_newcombe_interval_stays_inside_the_possible_range_at_the_edges() -> None:
    low, high = proportion_difference_ci(0, 10, 10, 10)
    assert -1.0 <= float(low) <= 1.0 and -1.0 <= float(high) <= 1.0
    assert float(low) > 0.0


def test_proportion_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        two_proportion_test(5, 4, 1, 10)
    with pytest.raises(ValueError):
        two_proportion_test(1, 0, 1, 10)


def _normal_summaries(
    rng: np.random.Generator, runs: int, n: int, sigma: float
) -> tuple[FloatArray, FloatArray]:
    """Exact sample mean and variance of n normal draws per run: N(0, s^2/n) and s^2 chi2_(n-1)/(n-1)."""
    means = rng.normal(0.0, sigma / np.sqrt(n), runs)
    variances = sigma**2 * rng.chisquare(n - 1, runs) / (n - 1)
    return means, variances


@pytest.mark.parametrize(("n_b", "sigma_b"), [(20, 1.0), (60, 1.0)])
def test_welch_false_positive_rate_at_n20_with_unequal_variances(n_b: int, sigma_b: float) -> None:
    """Welch FPR <= 0.06 at n = 20 (sd 4 vs 1), where the pooled-variance t test breaks down."""
    runs, n_a, sigma_a = 20_000, 20, 4.0
    rng = np.random.default_rng(20)
    mean_a, var_a = _normal_summaries(rng, runs, n_a, sigma_a)
    mean_b, var_b = _normal_summaries(rng, runs, n_b, sigma_b)
    welch_fpr = float(np.mean(np.asarray(welch_t(n_a, mean_a, var_a, n_b, mean_b, var_b).p_value) < 0.05))
    assert welch_fpr <= 0.06
    pooled = sps.ttest_ind_from_stats(
        mean_b, np.sqrt(var_b), n_b, mean_a, np.sqrt(var_a), n_a, equal_var=True
    ).pvalue
    pooled_fpr = float(np.mean(pooled < 0.05))
    print("welch_fpr =", welch_fpr)
    print("pooled_t_fpr =", pooled_fpr)
    if n_b != n_a:
        # The big arm has the small variance: the pooled test underestimates se (the harness sees it).
        assert pooled_fpr > 0.10

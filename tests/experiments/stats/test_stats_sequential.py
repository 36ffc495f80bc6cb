"""Mixture sequential test: formulas, and the simulation checks C1, C2, C3 and C5 of STATISTICS.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import (
    Looks,
    SequentialSettings,
    always_valid_p_values,
    boundary_z,
    confidence_sequence,
    mean_difference_looks,
    mixture_rho,
    proportion_difference_looks,
    required_sample_size_means,
    sequential_sample_size_means,
    sequential_test,
    welch_t,
)
from experiments.stats._arrays import FloatArray
from experiments.stats.normal import z_statistic
from experiments.stats.sequential import log_mixture_likelihood_ratio

ALPHA = 0.05


def fpr_bound(alpha: float, runs: int) -> float:
    """STATISTICS.md pass rule for a false-positive rate over R runs: alpha + 3 sqrt(alpha(1-alpha)/R)."""
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / runs)


def gaussian_looks(
    rng: np.random.Generator, runs: int, step: int, n_looks: int, mean: float, sigma: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative (n, mean, variance) of normal data at looks every `step` units, drawn exactly.

    Between looks only a block's sum and its within-block sum of squares matter: the sum is
    N(step*mu, step*sigma^2) and, independently, the within-block squares are sigma^2 chi2_(step-1).
    """
    sums = rng.normal(step * mean, sigma * math.sqrt(step), (runs, n_looks))
    squares = sigma**2 * rng.chisquare(step - 1, (runs, n_looks)) + sums**2 / step
    n = step * np.arange(1, n_looks + 1, dtype=np.float64)
    means = np.cumsum(sums, axis=1) / n
    variances = (np.cumsum(squares, axis=1) - n * means**2) / (n - 1.0)
    return n, means, variances


ArmSummaries = tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]


def aa_summaries(seed: int, runs: int, delta: float = 0.0, sigma_b: float = 1.0) -> ArmSummaries:
    """C1 layout: (n, mean_A, var_A, mean_B, var_B) at a look every 100 units per arm up to 10,000."""
    rng = np.random.default_rng(seed)
    n, mean_a, var_a = gaussian_looks(rng, runs, 100, 100, 0.0, 1.0)
    _, mean_b, var_b = gaussian_looks(rng, runs, 100, 100, delta, sigma_b)
    return n, mean_a, var_a, mean_b, var_b


def aa_looks(seed: int, runs: int, delta: float = 0.0, sigma_b: float = 1.0) -> Looks:
    n, mean_a, var_a, mean_b, var_b = aa_summaries(seed, runs, delta, sigma_b)
    return mean_difference_looks(n, mean_a, var_a, n, mean_b, var_b)


@pytest.fixture(scope="module")
def c1_runs() -> ArmSummaries:
    return aa_summaries(seed=2024, runs=10_000)


def test_rho_matches_the_growthbook_formula() -> None:
    n_star, alpha = 20_000.0, 0.05
    expected = math.sqrt((-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / n_star)
    assert mixture_rho(n_star, alpha) == pytest.approx(expected)
    assert mixture_rho(n_star, alpha, "greater") == pytest.approx(mixture_rho(n_star, 2 * alpha))
    with pytest.raises(ValueError):
        mixture_rho(0.0)


def test_likelihood_ratio_equals_johari_form() -> None:
    # Johari et al.: Lambda = sqrt(V/(V + n tau^2)) exp(n^2 tau^2 d^2 / (2 V (V + n tau^2))).
    variance, n, tau2, delta = 2.0, 400.0, 0.01, 0.15
    johari = math.sqrt(variance / (variance + n * tau2)) * math.exp(
        n**2 * tau2 * delta**2 / (2 * variance * (variance + n * tau2))
    )
    z = delta / math.sqrt(variance / n)
    ours = float(np.exp(log_mixture_likelihood_ratio(z, n * tau2 / variance)))
    assert ours == pytest.approx(johari, rel=1e-12)


def test_one_sided_likelihood_ratio_is_the_half_normal_mixture() -> None:
    # Integrate exp(theta S - theta^2 I / 2) against a half-normal prior numerically.
    z, a = 1.7, 3.0
    information, tau = 1.0, math.sqrt(a)
    grid = np.linspace(0.0, 12.0 * tau, 200_001)
    integrand = np.exp(grid * z - grid**2 * information / 2) * 2 * sps.norm.pdf(grid, scale=tau)
    numeric = float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(grid)))
    assert float(np.exp(log_mixture_likelihood_ratio(z, a, "greater"))) == pytest.approx(numeric, rel=1e-6)
    assert float(np.exp(log_mixture_likelihood_ratio(-z, a, "less"))) == pytest.approx(numeric, rel=1e-6)


def test_confidence_sequence_half_width_matches_both_published_forms() -> None:
    variance, n, alpha = 2.0, 1_000.0, 0.05
    rho = mixture_rho(2 * n, alpha)
    a = 2 * n * rho**2
    tau2 = a * variance / n
    spread = variance + n * tau2
    johari = math.sqrt(variance * spread / (n**2 * tau2) * math.log(spread / (variance * alpha**2)))
    se = math.sqrt(variance / n)
    growthbook = se * math.sqrt((1 + a) / a * math.log((1 + a) / alpha**2))
    assert float(boundary_z(a, alpha)) * se == pytest.approx(johari, rel=1e-12)
    assert johari == pytest.approx(growthbook, rel=1e-12)


def test_one_sided_boundary_is_where_the_ratio_reaches_one_over_alpha() -> None:
    a = np.array([0.5, 8.0, 500.0])
    z = np.asarray(boundary_z(a, ALPHA, "greater"))
    assert np.allclose(log_mixture_likelihood_ratio(z, a, "greater"), -math.log(ALPHA), atol=1e-9)
    # The one-sided boundary is lower than the two-sided one: power spent on one tail only.
    assert np.all(z < np.asarray(boundary_z(a, ALPHA)))


def test_p_values_are_a_running_minimum_and_respect_the_burn_in() -> None:
    estimate = np.array([0.9, 0.4, 0.0, 0.5])
    n_min_arm = np.array([50.0, 200.0, 400.0, 800.0])
    looks = Looks(estimate, np.full(4, 0.1), 2.0 * n_min_arm, n_min_arm)
    p = always_valid_p_values(looks, SequentialSettings(n_star=1_000, burn_in=100))
    assert p[0] == 1.0  # 50 units per arm: still inside the burn-in, however large the estimate
    assert np.all(np.diff(p) <= 0.0)
    assert p[2] == p[1]  # the estimate fell back to 0, but evidence already seen is kept
    no_burn_in = always_valid_p_values(looks, SequentialSettings(n_star=1_000, burn_in=0))
    assert no_burn_in[0] < 1e-6


def test_sequential_test_reports_the_first_rejection_and_a_shrinking_sequence() -> None:
    looks = aa_looks(seed=1, runs=50, delta=0.2)
    result = sequential_test(looks, SequentialSettings(n_star=20_000))
    assert np.all(np.diff(result.ci_high - result.ci_low, axis=-1) <= 0.0)
    first = np.asarray(result.first_rejection)
    assert np.all(first >= 0)  # an effect of 0.2 sd is found in every run by 10,000 per arm
    rows = np.arange(first.size)
    assert np.all(result.p_value[rows, first] <= ALPHA)
    assert np.all(result.p_value[rows, np.maximum(first - 1, 0)][first > 0] > ALPHA)
    assert np.all(result.ci_low[rows, first] > 0.0)  # the sequence excludes 0 exactly when p <= alpha


def test_one_sided_guardrail_only_fires_in_its_direction() -> None:
    worse = aa_looks(seed=2, runs=200, delta=0.1)
    better = aa_looks(seed=3, runs=200, delta=-0.1)
    settings = SequentialSettings(n_star=20_000, alternative="greater")
    assert np.mean(sequential_test(worse, settings).reject[:, -1]) > 0.9
    assert np.mean(sequential_test(better, settings).reject[:, -1]) == 0.0
    low, high = confidence_sequence(worse, settings)
    assert np.all(np.isinf(high)) and np.all(np.isfinite(low[:, -1]))


def test_proportion_looks_use_the_bernoulli_variance() -> None:
    # Two runs (rows) of one look each.
    looks = proportion_difference_looks(np.array([[10.0], [0.0]]), 100.0, np.array([[20.0], [0.0]]), 100.0)
    expected = math.sqrt(0.1 * 0.9 / 100 + 0.2 * 0.8 / 100)
    assert looks.standard_error[0, 0] == pytest.approx(expected)
    assert looks.estimate[0, 0] == pytest.approx(0.1)
    p = always_valid_p_values(looks, SequentialSettings(n_star=200, burn_in=100))
    assert p[1, 0] == 1.0  # no events in either arm: no evidence, not a division by zero


def test_a_look_without_events_does_not_pin_the_confidence_sequence() -> None:
    # Rare errors: no error in either arm at the first look (se = 0), then errors appear.
    looks = proportion_difference_looks(np.array([0.0, 5.0, 12.0]), 200.0, np.array([0.0, 7.0, 15.0]), 200.0)
    low, high = confidence_sequence(looks, SequentialSettings(n_star=400))
    assert low[0] == -np.inf and high[0] == np.inf
    assert low[2] < 0.0 < high[2] and high[2] - low[2] > 0.01


def test_c1_aa_peeking_every_100_per_arm(c1_runs: ArmSummaries) -> None:
    """C1: A/A, 10,000 runs, a look every 100/arm to 10,000/arm: mixture FPR <= 0.0565, naive >= 0.25."""
    n, mean_a, var_a, mean_b, var_b = c1_runs
    runs = mean_a.shape[0]
    looks = mean_difference_looks(n, mean_a, var_a, n, mean_b, var_b)
    sequential_fpr = float(np.mean(sequential_test(looks, SequentialSettings(n_star=20_000)).reject[:, -1]))
    # The naive analyst: a Welch t test at every look, stopping at the first p < 0.05.
    naive = np.asarray(welch_t(n, mean_a, var_a, n, mean_b, var_b).p_value) < ALPHA
    naive_fpr = float(np.mean(naive.any(axis=1)))
    print("sequential_fpr =", sequential_fpr)
    print("naive_fpr =", naive_fpr)
    assert sequential_fpr <= fpr_bound(ALPHA, runs)
    assert naive_fpr >= 0.25


def test_c2_look_after_every_pair() -> None:
    """C2: a look after every pair up to 5,000/arm (normal and Bernoulli data): FPR <= 0.06."""
    n_max, chunk = 5_000, 250
    n = np.arange(1, n_max + 1, dtype=np.float64)
    settings = SequentialSettings(n_star=2 * n_max)
    rng = np.random.default_rng(11)
    rejections = naive = 0
    mean_runs = 2_000
    for _ in range(mean_runs // chunk):
        moments = []
        for _arm in range(2):
            draws = rng.standard_normal((chunk, n_max))
            means = np.cumsum(draws, axis=1) / n
            with np.errstate(divide="ignore", invalid="ignore"):
                variances = (np.cumsum(draws**2, axis=1) - n * means**2) / (n - 1.0)
            moments.append((means, variances))
        (mean_a, var_a), (mean_b, var_b) = moments
        looks = mean_difference_looks(n, mean_a, var_a, n, mean_b, var_b)
        rejections += int(np.sum(always_valid_p_values(looks, settings)[:, -1] <= ALPHA))
        z = z_statistic(looks.estimate[:, 99:], looks.standard_error[:, 99:], 0.0)
        naive += int(np.sum(np.any(np.abs(z) > sps.norm.isf(ALPHA / 2), axis=1)))
    means_fpr, naive_fpr = rejections / mean_runs, naive / mean_runs
    bernoulli_runs, rejections = 1_000, 0
    for _ in range(bernoulli_runs // chunk):
        successes_a = np.cumsum(rng.random((chunk, n_max)) < 0.2, axis=1)
        successes_b = np.cumsum(rng.random((chunk, n_max)) < 0.2, axis=1)
        looks = proportion_difference_looks(successes_a, n, successes_b, n)
        rejections += int(np.sum(always_valid_p_values(looks, settings)[:, -1] <= ALPHA))
    bernoulli_fpr = rejections / bernoulli_runs
    print("means_fpr =", means_fpr)
    print("bernoulli_fpr =", bernoulli_fpr)
    print("naive_z_fpr =", naive_fpr)
    assert means_fpr <= 0.06
    assert bernoulli_fpr <= 0.06
    assert naive_fpr >= 0.25


def test_c3_confidence_sequence_covers_at_every_look() -> None:
    """C3: the confidence sequence covers the true difference at every look simultaneously, >= 0.945."""
    runs, delta = 4_000, 0.1
    looks = aa_looks(seed=7, runs=runs, delta=delta, sigma_b=1.5)
    low, high = confidence_sequence(looks, SequentialSettings(n_star=20_000))
    coverage = float(np.mean(np.all((low <= delta) & (high >= delta), axis=1)))
    low, _ = confidence_sequence(looks, SequentialSettings(n_star=20_000, alternative="greater"))
    one_sided = float(np.mean(np.all(low <= delta, axis=1)))
    print("coverage =", coverage)
    print("one_sided_coverage =", one_sided)
    assert coverage >= 0.945
    assert one_sided >= 0.945


@pytest.mark.parametrize("n_star", [2_000, 5_000, 20_000, 100_000, 1_000_000])
def test_c5_false_positive_rate_over_a_range_of_n_star(n_star: int, c1_runs: ArmSummaries) -> None:
    """C5: the FPR stays within the pass rule whatever the tuning N*, tiny to huge (C1's runs)."""
    n, mean_a, var_a, mean_b, var_b = c1_runs
    runs = mean_a.shape[0]
    looks = mean_difference_looks(n, mean_a, var_a, n, mean_b, var_b)
    fpr = float(np.mean(always_valid_p_values(looks, SequentialSettings(n_star=n_star))[:, -1] <= ALPHA))
    print("fpr =", fpr)
    assert fpr <= fpr_bound(ALPHA, runs)


def test_c4_sequential_plan_reaches_its_power_when_watched_every_100_units() -> None:
    """C4, sequential side: at `sequential_sample_size_means` per arm (looks every 100 per arm, the last
    at or below the plan) the mixture test has power >= 0.78; at the fixed-horizon n it does not."""
    runs, mde = 2_000, 0.1
    fixed_n = required_sample_size_means(1.0, 1.0, mde)
    planned_n = sequential_sample_size_means(1.0, 1.0, mde)
    rng = np.random.default_rng(44)
    n_looks = planned_n // 100
    n, mean_a, var_a = gaussian_looks(rng, runs, 100, n_looks, 0.0, 1.0)
    _, mean_b, var_b = gaussian_looks(rng, runs, 100, n_looks, mde, 1.0)
    looks = mean_difference_looks(n, mean_a, var_a, n, mean_b, var_b)
    rejected_by = sequential_test(looks, SequentialSettings(n_star=2 * planned_n)).reject.mean(axis=0)
    power_at_plan = float(rejected_by[-1])
    power_at_fixed_n = float(rejected_by[fixed_n // 100 - 1])
    needed = n[int(np.argmax(rejected_by >= 0.8))] if rejected_by[-1] >= 0.8 else math.inf
    print("fixed_n =", fixed_n)
    print("sequential_plan_n =", planned_n)
    print("power_at_plan =", power_at_plan)
    print("power_at_fixed_n =", power_at_fixed_n)
    print("monitored_n_for_power_0_8_over_fixed_n =", needed / fixed_n)
    assert power_at_plan >= 0.78
    assert power_at_fixed_n < 0.78

"""Delta method: relative lift and ratio metrics; coverage when requests cluster in users."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.stats import RatioSummary, ratio_difference, ratio_metric_variance, relative_lift
from experiments.stats._arrays import FloatArray


def test_relative_lift_uses_the_documented_variance() -> None:
    result = relative_lift(1_000, 10.0, 9.0, 1_200, 10.5, 16.0)
    variance = 9.0 * 10.5**2 / (10.0**4 * 1_000) + 16.0 / (10.0**2 * 1_200)
    assert result.estimate == pytest.approx(0.05)
    assert result.standard_error == pytest.approx(math.sqrt(variance))
    assert result.ci_low == pytest.approx(0.05 - 1.959963984540054 * math.sqrt(variance))
    with pytest.raises(ValueError):
        relative_lift(10, 0.0, 1.0, 10, 1.0, 1.0)


def test_relative_lift_interval_covers_the_true_lift() -> None:
    runs, n = 20_000, 1_000
    rng = np.random.default_rng(1)
    mean_a = rng.normal(10.0, 3.0 / math.sqrt(n), runs)
    mean_b = rng.normal(10.5, 4.0 / math.sqrt(n), runs)
    var_a = 9.0 * rng.chisquare(n - 1, runs) / (n - 1)
    var_b = 16.0 * rng.chisquare(n - 1, runs) / (n - 1)
    result = relative_lift(n, mean_a, var_a, n, mean_b, var_b)
    coverage = float(np.mean((np.asarray(result.ci_low) <= 0.05) & (np.asarray(result.ci_high) >= 0.05)))
    print("coverage =", coverage)
    assert 0.94 <= coverage <= 0.96


def test_ratio_variance_matches_the_formula_and_the_summaries_agree() -> None:
    rng = np.random.default_rng(2)
    requests = 1.0 + rng.poisson(4, 500)
    errors = rng.binomial(requests.astype(np.int64), 0.1).astype(np.float64)
    summary = RatioSummary.from_units(errors, requests)
    from_sums = RatioSummary.from_sums(
        500, errors.sum(), requests.sum(), (errors**2).sum(), (requests**2).sum(), (errors * requests).sum()
    )
    for field in ("mean_numerator", "mean_denominator", "var_numerator", "var_denominator", "covariance"):
        assert getattr(from_sums, field) == pytest.approx(getattr(summary, field), rel=1e-9)
    assert summary.ratio == pytest.approx(errors.sum() / requests.sum())
    mu_m, mu_d = errors.mean(), requests.mean()
    s_m, s_d = errors.var(ddof=1), requests.var(ddof=1)
    s_md = float(np.cov(errors, requests)[0, 1])
    expected = (s_m / mu_d**2 - 2 * mu_m * s_md / mu_d**3 + mu_m**2 * s_d / mu_d**4) / 500
    assert summary.ratio_variance == pytest.approx(expected)
    assert ratio_metric_variance(500, mu_m, mu_d, s_m, s_d, s_md) == pytest.approx(expected)


def clustered_error_counts(
    rng: np.random.Generator, runs: int, users: int, error_rate: float
) -> tuple[FloatArray, FloatArray]:
    """Per user: requests ~ 1 + Poisson(9); the user's own error rate ~ Beta (mean `error_rate`,
    concentration 10), shared by all their requests. Returns (errors, requests), shape (runs, users)."""
    requests = 1 + rng.poisson(9, (runs, users))
    user_rate = rng.beta(10 * error_rate, 10 * (1 - error_rate), (runs, users))
    return rng.binomial(requests, user_rate).astype(np.float64), requests.astype(np.float64)


def test_delta_method_covers_a_clustered_ratio_metric_where_the_naive_interval_fails() -> None:
    """Per-request error rate, requests clustered in users: delta-method coverage >= 0.94 while the
    interval that treats requests as independent trials covers < 0.9."""
    runs, users, rate_a, rate_b = 10_000, 500, 0.05, 0.06
    rng = np.random.default_rng(3)
    errors_a, requests_a = clustered_error_counts(rng, runs, users, rate_a)
    errors_b, requests_b = clustered_error_counts(rng, runs, users, rate_b)
    control = RatioSummary.from_units(errors_a, requests_a)
    treatment = RatioSummary.from_units(errors_b, requests_b)
    truth = rate_b - rate_a  # requests per user are independent of the user's rate
    delta = ratio_difference(control, treatment)
    coverage = float(np.mean((np.asarray(delta.ci_low) <= truth) & (truth <= np.asarray(delta.ci_high))))
    p_a = errors_a.sum(axis=1) / requests_a.sum(axis=1)
    p_b = errors_b.sum(axis=1) / requests_b.sum(axis=1)
    naive_se = np.sqrt(p_a * (1 - p_a) / requests_a.sum(axis=1) + p_b * (1 - p_b) / requests_b.sum(axis=1))
    naive_coverage = float(np.mean(np.abs(p_b - p_a - truth) <= 1.959963984540054 * naive_se))
    relative = ratio_difference(control, treatment, relative=True)
    true_lift = truth / rate_a
    relative_coverage = float(
        np.mean((np.asarray(relative.ci_low) <= true_lift) & (true_lift <= np.asarray(relative.ci_high)))
    )
    print("delta_coverage =", coverage)
    print("relative_delta_coverage =", relative_coverage)
    print("naive_coverage =", naive_coverage)
    assert coverage >= 0.94
    assert relative_coverage >= 0.94
    assert naive_coverage < 0.9


def test_ratio_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        RatioSummary.from_units([1.0], [2.0])
    with pytest.raises(ValueError):
        ratio_metric_variance(10, 1.0, 0.0, 1.0, 1.0, 0.0)

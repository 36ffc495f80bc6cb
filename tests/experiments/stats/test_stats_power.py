"""Planning formulas: round trips between n, MDE and power, and check C4 (power at the planned n)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.stats import (
    achieved_power_means,
    achieved_power_proportions,
    minimum_detectable_effect_means,
    minimum_detectable_effect_proportions,
    required_sample_size_means,
    required_sample_size_proportions,
    sequential_sample_size_means,
    two_proportion_test,
    welch_t,
)
from experiments.stats._arrays import Alternative


def test_sample_size_for_means_matches_the_textbook_value() -> None:
    # (1.959964 + 0.841621)^2 * (1 + 1) / 0.1^2 = 1569.8
    assert required_sample_size_means(1.0, 1.0, 0.1) == 1570
    assert required_sample_size_means(1.0, 1.0, -0.1) == 1570


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_means_round_trip_between_n_mde_and_power(alternative: Alternative) -> None:
    n = required_sample_size_means(2.0, 3.0, 0.25, power=0.9, alternative=alternative)
    assert achieved_power_means(2.0, 3.0, n, n, 0.25, alternative=alternative) >= 0.9
    assert achieved_power_means(2.0, 3.0, n - 1, n - 1, 0.25, alternative=alternative) < 0.9
    mde = minimum_detectable_effect_means(2.0, 3.0, n, n, power=0.9, alternative=alternative)
    assert mde <= 0.25
    assert achieved_power_means(2.0, 3.0, n, n, mde, alternative=alternative) == pytest.approx(0.9, abs=1e-4)


def test_proportions_round_trip_between_n_mde_and_power() -> None:
    n = required_sample_size_proportions(0.10, 0.12)
    assert 3_800 <= n <= 3_900  # the classic answer for 10 % -> 12 % is about 3,840 per arm
    assert achieved_power_proportions(0.10, 0.12, n, n) >= 0.8
    assert achieved_power_proportions(0.10, 0.12, n - 1, n - 1) < 0.8
    mde = minimum_detectable_effect_proportions(0.10, n, n)
    assert mde == pytest.approx(0.02, rel=1e-3)
    assert achieved_power_proportions(0.10, 0.10 + mde, n, n) == pytest.approx(0.8, abs=1e-9)
    drop = minimum_detectable_effect_proportions(0.10, n, n, alternative="less")
    assert achieved_power_proportions(0.10, 0.10 - drop, n, n, alternative="less") == pytest.approx(0.8)


def test_sequential_plan_costs_more_than_the_fixed_horizon() -> None:
    fixed = required_sample_size_means(1.0, 1.0, 0.1)
    sequential = sequential_sample_size_means(1.0, 1.0, 0.1)
    assert 1.5 * fixed < sequential < 2.1 * fixed


def test_planning_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        required_sample_size_means(1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        required_sample_size_proportions(0.1, 0.1)
    with pytest.raises(ValueError):
        required_sample_size_means(1.0, 1.0, 0.1, power=1.0)
    with pytest.raises(ValueError):
        minimum_detectable_effect_proportions(0.5, 10, 10, power=0.99)


def test_c4_power_at_the_planned_n_for_means() -> None:
    """C4: Welch at the planned n per arm detects the MDE with power >= 0.78 (planned 0.80)."""
    runs, mde, sigma_a, sigma_b = 10_000, 0.1, 1.0, 1.5
    n = required_sample_size_means(sigma_a, sigma_b, mde)
    rng = np.random.default_rng(4)
    mean_a = rng.normal(0.0, sigma_a / math.sqrt(n), runs)
    mean_b = rng.normal(mde, sigma_b / math.sqrt(n), runs)
    var_a = sigma_a**2 * rng.chisquare(n - 1, runs) / (n - 1)
    var_b = sigma_b**2 * rng.chisquare(n - 1, runs) / (n - 1)
    power = float(np.mean(np.asarray(welch_t(n, mean_a, var_a, n, mean_b, var_b).p_value) < 0.05))
    print("n_per_arm =", n)
    print("power =", power)
    assert power >= 0.78


def test_c4_power_at_the_planned_n_for_proportions() -> None:
    """C4 for a conversion rate 10 % -> 12 %: the pooled z test at the planned n has power >= 0.78."""
    runs = 10_000
    n = required_sample_size_proportions(0.10, 0.12)
    rng = np.random.default_rng(5)
    result = two_proportion_test(rng.binomial(n, 0.10, runs), n, rng.binomial(n, 0.12, runs), n)
    assert not np.asarray(result.exact).any()
    power = float(np.mean(np.asarray(result.p_value) < 0.05))
    print("n_per_arm =", n)
    print("power =", power)
    assert power >= 0.78

"""Mann-Whitney U and the Hodges-Lehmann shift, checked against scipy and brute-force differences."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import mann_whitney
from experiments.stats._arrays import Alternative, FloatArray
from experiments.stats.rank_tests import kth_pairwise_difference


def all_differences(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.sort((b[np.newaxis, :] - a[:, np.newaxis]).ravel())


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_u_and_p_value_match_scipy(alternative: Alternative) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(0.0, 1.0, 120), rng.lognormal(0.3, 1.0, 90)
    result = mann_whitney(a, b, alternative=alternative)
    reference = sps.mannwhitneyu(b, a, alternative=alternative)
    assert result.statistic == float(reference.statistic)
    assert result.p_value == pytest.approx(float(reference.pvalue))
    assert result.probability_b_greater == pytest.approx(result.statistic / (a.size * b.size))


@pytest.mark.parametrize(("n_a", "n_b"), [(37, 51), (40, 50), (1, 1), (2, 3)])
def test_kth_difference_equals_brute_force(n_a: int, n_b: int) -> None:
    rng = np.random.default_rng(n_a * 100 + n_b)
    for values in (rng.normal(size=n_a + n_b), rng.integers(0, 6, n_a + n_b).astype(float)):
        a, b = np.sort(values[:n_a]), np.sort(values[n_a:])
        differences = all_differences(a, b)
        for k in sorted({1, differences.size, (differences.size + 1) // 2, max(1, differences.size // 7)}):
            assert kth_pairwise_difference(a, b, k) == differences[k - 1]
    with pytest.raises(ValueError):
        kth_pairwise_difference(np.array([0.0]), np.array([1.0]), 2)


def test_hodges_lehmann_shift_and_interval_equal_brute_force() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.0, 1.0, 300), rng.normal(0.3, 1.0, 400)
    result = mann_whitney(a, b)
    differences = all_differences(a, b)
    assert result.shift == pytest.approx(float(np.median(differences)))
    m = differences.size
    c = math.floor(m / 2 - 1.959963984540054 * math.sqrt(a.size * b.size * (a.size + b.size + 1) / 12))
    assert result.shift_ci_low == differences[c - 1]
    assert result.shift_ci_high == differences[m - c]
    assert result.shift_ci_low < 0.3 < result.shift_ci_high


def test_one_sided_interval_is_open_on_the_untested_side() -> None:
    rng = np.random.default_rng(3)
    result = mann_whitney(rng.normal(size=200), rng.normal(0.5, size=200), alternative="greater")
    assert result.shift_ci_high == math.inf and 0.0 < result.shift_ci_low < result.shift
    assert result.p_value < 1e-4


def test_tiny_samples_get_an_unbounded_interval_not_an_error() -> None:
    result = mann_whitney([1.0, 2.0], [3.0])
    assert result.shift == 1.5
    assert result.shift_ci_low == -math.inf and result.shift_ci_high == math.inf


def test_large_arms_do_not_materialise_all_pairs() -> None:
    # 40,000 x 40,000 = 1.6e9 pairwise differences (13 GB as float64) are never built.
    rng = np.random.default_rng(4)
    a, b = rng.lognormal(4.0, 0.5, 40_000), rng.lognormal(4.0, 0.5, 40_000) + 3.0
    started = time.perf_counter()
    result = mann_whitney(a, b)
    assert time.perf_counter() - started < 20.0
    assert result.shift_ci_low < 3.0 < result.shift_ci_high  # B is A's distribution shifted by 3


def test_invalid_samples_are_rejected() -> None:
    with pytest.raises(ValueError):
        mann_whitney([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney([1.0, math.nan], [1.0])

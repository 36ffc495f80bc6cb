"""Unit bootstrap of a quantile difference: weighted quantiles, seeding, and coverage under clustering."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats import bootstrap_quantile_difference, units_from_groups
from experiments.stats._arrays import FloatArray, IntArray
from experiments.stats.bootstrap import _arm, _weighted_quantile


def clustered_latencies(rng: np.random.Generator, users: int) -> tuple[FloatArray, IntArray]:
    """~10 requests per user sharing a per-user latency level (log-scale sd 0.5 each part)."""
    unit_ids = np.repeat(np.arange(users), 1 + rng.poisson(9, users))
    latency = np.exp(rng.normal(0.0, 0.5, users)[unit_ids] + rng.normal(0.0, 0.5, unit_ids.size))
    return latency, unit_ids


def test_units_from_groups_flattens_per_unit_arrays() -> None:
    values, unit_ids = units_from_groups([[1.0, 2.0], [3.0], np.array([4.0, 5.0, 6.0])])
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert unit_ids.tolist() == [0, 0, 1, 2, 2, 2]


@pytest.mark.parametrize("q", [0.1, 0.5, 0.99])
def test_weighted_quantile_with_unit_weights_is_the_inverted_cdf_quantile(q: float) -> None:
    values = np.random.default_rng(1).lognormal(size=777)
    arm = _arm(values, None)
    ones = np.ones((1, arm.n_units), dtype=np.int64)
    assert _weighted_quantile(arm, ones, q)[0] == np.quantile(values, q, method="inverted_cdf")
    # Doubling a unit's weight equals duplicating its observations.
    twice = ones.copy()
    twice[0, :100] = 2
    duplicated = np.concatenate([arm.ordered, arm.ordered[np.isin(arm.units, np.arange(100))]])
    assert _weighted_quantile(arm, twice, q)[0] == np.quantile(duplicated, q, method="inverted_cdf")


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(size=2_000), rng.lognormal(0.1, size=2_000)
    first = bootstrap_quantile_difference(a, b, 0.5, n_resamples=300, seed=7)
    again = bootstrap_quantile_difference(a, b, 0.5, n_resamples=300, seed=7)
    other = bootstrap_quantile_difference(a, b, 0.5, n_resamples=300, seed=8)
    assert first == again
    assert first.ci_low != other.ci_low
    assert first.estimate == pytest.approx(
        float(np.quantile(b, 0.5, method="inverted_cdf") - np.quantile(a, 0.5, method="inverted_cdf"))
    )


def test_resampling_units_widens_the_interval_when_requests_cluster() -> None:
    rng = np.random.default_rng(3)
    (a, units_a), (b, units_b) = clustered_latencies(rng, 400), clustered_latencies(rng, 400)
    by_unit = bootstrap_quantile_difference(a, b, 0.5, control_unit_ids=units_a, treatment_unit_ids=units_b)
    by_request = bootstrap_quantile_difference(a, b, 0.5)
    assert by_unit.n_units_control == 400
    assert by_request.n_units_control == a.size
    assert by_unit.standard_error > 1.5 * by_request.standard_error


def test_bootstrap_over_units_covers_and_over_requests_does_not() -> None:
    """A/A with clustered requests: the unit bootstrap's 95 % interval covers 0 about 95 % of the time,
    the request bootstrap's far less often."""
    runs, users = 200, 150
    rng = np.random.default_rng(4)
    covered = naive_covered = 0
    for run in range(runs):
        (a, units_a), (b, units_b) = clustered_latencies(rng, users), clustered_latencies(rng, users)
        by_unit = bootstrap_quantile_difference(
            a, b, 0.5, control_unit_ids=units_a, treatment_unit_ids=units_b, n_resamples=300, seed=run
        )
        by_request = bootstrap_quantile_difference(a, b, 0.5, n_resamples=300, seed=run)
        covered += by_unit.ci_low <= 0.0 <= by_unit.ci_high
        naive_covered += by_request.ci_low <= 0.0 <= by_request.ci_high
    print("unit_bootstrap_coverage =", covered / runs)
    print("request_bootstrap_coverage =", naive_covered / runs)
    assert covered / runs >= 0.9  # nominal 0.95; 0.9 is three Monte Carlo sd below it at 200 runs
    assert naive_covered / runs <= 0.8


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        bootstrap_quantile_difference([], [1.0, 2.0], 0.5)
    with pytest.raises(ValueError):
        bootstrap_quantile_difference([1.0, 2.0], [1.0, 2.0], 1.0)
    with pytest.raises(ValueError):
        bootstrap_quantile_difference([1.0, 2.0], [1.0, 2.0], 0.5, control_unit_ids=[1])

"""The latency histogram: quantiles within its stated relative error, merging, expansion."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.sketch import RELATIVE_ERROR, LogHistogram, bucket_index, bucket_value


def test_quantiles_are_within_the_relative_error() -> None:
    rng = np.random.default_rng(4)
    values = rng.lognormal(np.log(0.05), 1.0, size=50_000)
    histogram = LogHistogram.of(values)
    for q in (0.01, 0.5, 0.9, 0.99, 0.999):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert abs(histogram.quantile(q) - exact) <= RELATIVE_ERROR * exact * 1.0001
    assert RELATIVE_ERROR < 0.01


def test_every_value_is_reported_within_the_error_of_itself() -> None:
    for value in np.geomspace(2e-6, 3600, 2000):
        assert abs(bucket_value(bucket_index(value)) - value) <= RELATIVE_ERROR * value * 1.0001


def test_merging_equals_building_from_all_values() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.exponential(0.1, 1000), rng.exponential(0.3, 700)
    merged = LogHistogram.of(a)
    merged.merge(LogHistogram.of(b))
    assert merged == LogHistogram.of(np.concatenate([a, b]))
    assert merged.total == 1700


def test_expand_gives_one_sorted_value_per_observation_and_caps() -> None:
    histogram = LogHistogram.of([0.1, 0.2, 0.2, 0.05])
    expanded = histogram.expand()
    assert expanded.size == 4 and np.all(np.diff(expanded) >= 0)
    big = LogHistogram({10: 3000, 20: 1000})
    capped = big.expand(limit=400)
    assert capped.size == 400
    edge = 1e-6 * 1.02**11  # the upper edge of bucket 10: three quarters of the values lie below it
    assert np.mean(capped < edge) == pytest.approx(0.75)


def test_expanded_values_spread_across_their_bucket() -> None:
    # All in one bucket: the values cover the bucket's width instead of repeating one value, so
    # order statistics (and the quantile intervals built on them) do not collapse to a point.
    values = LogHistogram({50: 1000}).expand()
    low, high = 1e-6 * 1.02**50, 1e-6 * 1.02**51
    assert np.all((values >= low) & (values < high))
    assert len(np.unique(values)) == 1000 and np.all(np.diff(values) > 0)


def test_empty_and_tiny_values() -> None:
    assert np.isnan(LogHistogram().quantile(0.5))
    assert LogHistogram.of([0.0, 1e-9]).quantile(1.0) == pytest.approx(1e-6, rel=0.01)
    with pytest.raises(ValueError):
        LogHistogram().quantile(1.5)


def test_stored_counts_round_trip() -> None:
    assert LogHistogram.from_counts({"12": "3", "15": "0"}) == LogHistogram({12: 3})


def test_quantile_differences_from_sketches_keep_their_false_positive_rate() -> None:
    """Two arms with the same latency distribution, summarised by histograms: the p50 difference test
    must not flag them more often than its level (bucket-sized jumps with no spread did, at large n)."""
    from experiments.stats import quantile_difference_ci

    rng = np.random.default_rng(7)
    runs = 100
    # The median right on a bucket edge: each arm's median falls on either side by chance.
    edge = float(np.log(1e-6 * 1.02**300))
    flagged = 0
    for _ in range(runs):
        a = LogHistogram.of(rng.lognormal(edge, 0.05, 20000))
        b = LogHistogram.of(rng.lognormal(edge, 0.05, 20000))
        flagged += quantile_difference_ci(a.expand(), b.expand(), 0.5, alpha=0.05).difference.p_value < 0.05
    # alpha + 3 standard errors over the runs. A narrow distribution at large n: the sampling error
    # of the median is far below a bucket width, where bucket-sized jumps would be "significant".
    assert flagged / runs <= 0.05 + 3 * (0.05 * 0.95 / runs) ** 0.5

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
    assert capped.size == 400 and np.mean(capped == capped[0]) == pytest.approx(0.75)


def test_empty_and_tiny_values() -> None:
    assert np.isnan(LogHistogram().quantile(0.5))
    assert LogHistogram.of([0.0, 1e-9]).quantile(1.0) == pytest.approx(1e-6, rel=0.01)
    with pytest.raises(ValueError):
        LogHistogram().quantile(1.5)


def test_stored_counts_round_trip() -> None:
    assert LogHistogram.from_counts({"12": "3", "15": "0"}) == LogHistogram({12: 3})

"""The nearest-rank percentile behind the Python load generator's p50 and p99."""

from __future__ import annotations

import pytest
from _results import LoadResult, percentile


def test_nearest_rank_on_one_to_a_hundred() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0


def test_small_samples_round_the_rank_up() -> None:
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0], 99) == 3.0
    assert percentile([7.0], 1) == 7.0


def test_empty_sample_and_bad_percent_are_refused() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_result_round_trips_through_its_dict() -> None:
    result = LoadResult(requests=10, errors=1, duration_s=2.0, p50_ms=0.5, p99_ms=1.5)
    assert LoadResult.from_dict(result.to_dict()) == result
    assert result.rps == 5.0

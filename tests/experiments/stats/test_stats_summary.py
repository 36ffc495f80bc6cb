"""RunningMoments: incremental, mergeable, and numerically stable summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.stats import RunningMoments


def test_incremental_updates_match_numpy() -> None:
    values = np.random.default_rng(1).lognormal(4.0, 1.0, 1_000)
    moments = RunningMoments()
    for value in values:
        moments = moments.add(float(value))
    assert moments.count == 1_000
    assert moments.mean == pytest.approx(values.mean(), rel=1e-12)
    assert moments.variance == pytest.approx(values.var(ddof=1), rel=1e-10)
    assert moments.total == pytest.approx(values.sum(), rel=1e-12)
    assert moments.total_of_squares == pytest.approx((values**2).sum(), rel=1e-12)


def test_merge_equals_one_pass_over_everything() -> None:
    values = np.random.default_rng(2).normal(100.0, 5.0, 3_001)
    parts = [RunningMoments.from_values(chunk) for chunk in np.array_split(values, 7)]
    merged = RunningMoments()
    for part in parts:
        merged = merged.merge(part)
    whole = RunningMoments.from_values(values)
    assert merged.count == whole.count
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.m2 == pytest.approx(whole.m2, rel=1e-9)
    assert RunningMoments().add_many(values).variance == pytest.approx(whole.variance)


def test_from_sums_round_trips_through_sql_style_totals() -> None:
    values = np.array([1.0, 2.0, 4.0, 8.0])
    moments = RunningMoments.from_sums(4, values.sum(), (values**2).sum())
    assert moments.mean == pytest.approx(3.75)
    assert moments.variance == pytest.approx(values.var(ddof=1))
    assert RunningMoments.from_sums(0, 0.0, 0.0) == RunningMoments()


def test_variance_survives_a_large_offset() -> None:
    # Latencies in nanoseconds since an epoch: raw sums of squares cancel catastrophically here.
    values = 1e9 + np.array([4.0, 7.0, 13.0, 16.0])
    moments = RunningMoments()
    for value in values:
        moments = moments.add(float(value))
    assert moments.variance == pytest.approx(30.0, rel=1e-9)


def test_fewer_than_two_values_have_no_variance() -> None:
    assert math.isnan(RunningMoments().add(3.0).variance)
    with pytest.raises(ValueError):
        RunningMoments.from_sums(-1, 0.0, 0.0)

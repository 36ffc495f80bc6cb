"""RowHistory: a bounded, uniform sample per time bucket, pooled in proportion to traffic."""

from __future__ import annotations

import numpy as np

from plugins.monitor.history import BUCKET_S, ROWS_PER_BUCKET, RowHistory


class _Clock:
    def __init__(self) -> None:
        self.now = 4000 * BUCKET_S  # the start of a bucket

    def __call__(self) -> float:
        return self.now


def test_a_bucket_keeps_a_bounded_uniform_sample_of_its_rows() -> None:
    clock = _Clock()
    history = RowHistory(3600.0, clock, seed=1)
    stream = np.arange(20 * ROWS_PER_BUCKET, dtype=np.float64).reshape(-1, 1)
    for block in np.array_split(stream, 37):  # steps of uneven sizes, as the background task's are
        history.add(block, None)
    rows, seen = history.window(600.0)
    assert seen == len(stream) and len(rows) == ROWS_PER_BUCKET
    assert len(np.unique(rows)) == ROWS_PER_BUCKET
    # Uniform over the stream: each tenth of it holds about a tenth of the sample (binomial(500, 0.1):
    # sd 6.7; 6 sd either side).
    tenths = np.bincount((rows[:, 0] // (len(stream) / 10)).astype(int), minlength=10)
    assert tenths.min() >= 10 and tenths.max() <= 90


def test_a_window_pools_buckets_in_proportion_to_their_traffic_and_forgets_old_ones() -> None:
    clock = _Clock()
    history = RowHistory(2 * 3600.0, clock, seed=2)
    history.add(np.zeros((4 * ROWS_PER_BUCKET, 2)), ("a", "b"))  # a busy bucket of zeros
    clock.now += BUCKET_S + BUCKET_S / 2
    history.add(np.ones((ROWS_PER_BUCKET, 2)), ("a", "b"))  # a quiet one of ones
    rows, seen = history.window(2 * BUCKET_S)
    assert seen == 5 * ROWS_PER_BUCKET and history.names == ("a", "b")
    assert abs(float(rows[:, 0].mean()) - 0.2) < 0.01  # a fifth of the traffic was ones
    only_last, seen_last = history.window(BUCKET_S / 4)  # within the last bucket
    assert seen_last == ROWS_PER_BUCKET and float(only_last.mean()) == 1.0
    clock.now += 3 * 3600.0
    history.add(np.full((3, 2), 7.0), ("a", "b"))
    rows, seen = history.window(24 * 3600.0)
    assert seen == 3 and float(rows.mean()) == 7.0


def test_rows_of_another_width_start_the_history_again() -> None:
    history = RowHistory(3600.0, _Clock(), seed=3)
    history.add(np.zeros((10, 3)), None)
    history.add(np.ones((4, 5)), None)
    rows, seen = history.window(3600.0)
    assert rows.shape == (4, 5) and seen == 4

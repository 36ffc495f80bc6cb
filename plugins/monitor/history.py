"""Rows a model received lately, kept in time buckets, for a reference taken from live traffic.

`turnout monitor baseline MODEL --from 2h` asks for a reference made of the last two hours of a
model's inputs. Keeping every sampled row would cost memory without bound (100 samples/s of 30
features is 170 MB in two hours), so each bucket of BUCKET_S seconds keeps a uniform random sample of
its rows, at most ROWS_PER_BUCKET (a reservoir: Vitter's algorithm R, vectorised per step). A window
of several buckets is pooled in proportion to the rows each bucket saw, so a busy hour weighs more
than a quiet one, as it did in the traffic.

Memory: buckets over `keep` seconds times ROWS_PER_BUCKET rows times the features, 8 bytes each: the
default six hours of 30 features is 72 x 500 x 30 x 8 = 8.6 MB per model.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Five minutes: a window asked for in minutes or hours is met to within one bucket at its start.
BUCKET_S = 300.0
# 500 rows a bucket: 24 buckets (two hours) pool up to 12,000 rows, far more than the ~1,000 a
# decile reference needs, and a short window (15 minutes, 3 buckets) still has 1,500.
ROWS_PER_BUCKET = 500


@dataclass(slots=True)
class _Bucket:
    start: float
    rows: np.ndarray
    """(kept, features): the reservoir, filled up to ROWS_PER_BUCKET."""
    seen: int = 0


class RowHistory:
    """One model's recent input rows, in time buckets over the last `keep` seconds."""

    __slots__ = ("_buckets", "_clock", "_keep", "_rng", "names", "width")

    def __init__(self, keep: float, clock: Callable[[], float] = time.time, seed: int | None = None) -> None:
        self._keep = keep
        self._clock = clock
        self._rng = np.random.default_rng(seed)
        self._buckets: deque[_Bucket] = deque()
        self.width = 0
        self.names: tuple[str, ...] | None = None

    def add(self, rows: np.ndarray, names: tuple[str, ...] | None) -> None:
        """Keep a sample of `rows` in the current bucket; rows of another width than before start
        the history again (the model's inputs changed, the old rows cannot make its reference)."""
        if rows.ndim != 2 or not len(rows):
            return
        if rows.shape[1] != self.width or (names is not None and names != self.names):
            self._buckets.clear()
            self.width, self.names = rows.shape[1], names
        now = self._clock()
        while self._buckets and self._buckets[0].start < now - self._keep - BUCKET_S:
            self._buckets.popleft()
        start = now - now % BUCKET_S
        if not self._buckets or self._buckets[-1].start != start:
            self._buckets.append(_Bucket(start, np.empty((0, self.width))))
        self._sample_into(self._buckets[-1], rows)

    def _sample_into(self, bucket: _Bucket, rows: np.ndarray) -> None:
        free = ROWS_PER_BUCKET - len(bucket.rows)
        if free > 0:
            bucket.rows = np.vstack([bucket.rows, rows[:free]])
        rest = rows[max(free, 0) :]
        if len(rest):
            # Row i of the stream (counting from 0) replaces a random slot with chance C / (i + 1);
            # numpy assigns in order, so a later row wins a slot drawn twice, as it would one by one.
            order = bucket.seen + max(free, 0) + np.arange(len(rest))
            slots = self._rng.integers(0, order + 1)
            chosen = slots < ROWS_PER_BUCKET
            bucket.rows[slots[chosen]] = rest[chosen]
        bucket.seen += len(rows)

    def window(self, seconds: float) -> tuple[np.ndarray, int]:
        """The rows kept from the buckets of the last `seconds` (the oldest partly), pooled in
        proportion to what each bucket saw; and how many rows those buckets saw in all."""
        since = self._clock() - seconds
        buckets = [b for b in self._buckets if b.start + BUCKET_S > since and b.seen]
        if not buckets:
            return np.empty((0, self.width)), 0
        # Every bucket contributes the same share of what it saw: the smallest share any one kept.
        share = min(len(b.rows) / b.seen for b in buckets)
        parts = []
        for bucket in buckets:
            take = min(len(bucket.rows), round(share * bucket.seen))
            parts.append(bucket.rows[self._rng.choice(len(bucket.rows), take, replace=False)])
        return np.vstack(parts), sum(b.seen for b in buckets)

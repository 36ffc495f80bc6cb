"""A mergeable log-bucketed histogram of latencies: quantiles within 1 % relative error.

Bucket i holds values in [MIN * G^i, MIN * G^(i+1)). Reporting a bucket by r = 2 G L / (G + 1) (L its
lower edge) is off by at most (G - 1)/(G + 1) relative to any value in it, so with G = 1.02 every
quantile is within 0.99 % of a true sample quantile, whatever the distribution (the relative-error
guarantee of DDSketch: Masson, Rim, Lee, "DDSketch", VLDB 2019). Buckets are sparse integers, so two
histograms (replicas, time slices) merge by adding counts, and a store keeps them as hash fields.
Latencies from 1 us to 1 hour need at most ~1,100 buckets; real traffic fills a few hundred.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# Growth factor between bucket edges: 1.02 gives the 0.99 % relative error stated above.
GROWTH = 1.02
# The smallest resolved latency (1 us): anything faster is reported as 1 us.
MIN_VALUE = 1e-6
_LOG_GROWTH = math.log(GROWTH)
_REPRESENTATIVE = 2.0 * GROWTH / (GROWTH + 1.0)
RELATIVE_ERROR = (GROWTH - 1.0) / (GROWTH + 1.0)
# Expanding a histogram into one value per observation (for the quantile intervals) is capped here:
# beyond it the counts are scaled down, which keeps the shape and widens the interval (fewer
# observations), so the cap can only make a test more cautious. 2M float64 values are 16 MB.
MAX_EXPANDED = 2_000_000


def bucket_index(value: float) -> int:
    if not value > MIN_VALUE:
        return 0
    return int(math.log(value / MIN_VALUE) / _LOG_GROWTH)


def bucket_value(index: int) -> float:
    """The value reported for a bucket: within RELATIVE_ERROR of everything in it."""
    return MIN_VALUE * GROWTH**index * _REPRESENTATIVE


@dataclass(slots=True)
class LogHistogram:
    counts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Iterable[float]) -> LogHistogram:
        histogram = cls()
        for value in values:
            histogram.add(value)
        return histogram

    @classmethod
    def from_counts(cls, counts: Mapping[int, int] | Mapping[str, str]) -> LogHistogram:
        """From stored counts (keys may come back as strings, counts as floats)."""
        pairs = ((int(index), int(float(count))) for index, count in counts.items())
        return cls({index: count for index, count in pairs if count > 0})

    def add(self, value: float, count: int = 1) -> None:
        index = bucket_index(value)
        self.counts[index] = self.counts.get(index, 0) + count

    def merge(self, other: LogHistogram) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float:
        """The q-quantile (inverted empirical CDF: the smallest value with F >= q); NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must lie in [0, 1], got {q}")
        total = self.total
        if total == 0:
            return math.nan
        rank = max(1, math.ceil(q * total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return bucket_value(index)
        return bucket_value(max(self.counts))

    def expand(self, limit: int = MAX_EXPANDED) -> npt.NDArray[np.float64]:
        """One value per observation, sorted (scaled down to about `limit` values when larger).

        The observations of a bucket are spread evenly (geometrically) across its width instead of
        all sitting on one representative value: with every value of a bucket equal, two arms whose
        quantiles fall in neighbouring buckets would differ by a whole bucket with a falsely narrow
        interval, which at large samples reads as a significant difference that does not exist."""
        if not self.counts:
            return np.empty(0, dtype=np.float64)
        indices = np.array(sorted(self.counts), dtype=np.int64)
        counts = np.array([self.counts[int(i)] for i in indices], dtype=np.int64)
        total = int(counts.sum())
        if total > limit:
            counts = np.maximum(np.rint(counts * (limit / total)).astype(np.int64), 0)
        lower = MIN_VALUE * np.power(GROWTH, indices.astype(np.float64))
        starts = np.repeat(lower, counts)
        # Position of each observation inside its bucket: (j + 0.5) / n for j = 0..n-1.
        offsets = (
            np.concatenate([(np.arange(n) + 0.5) / n for n in counts if n > 0])
            if counts.any()
            else np.empty(0)
        )
        return np.asarray(starts * np.power(GROWTH, offsets), dtype=np.float64)

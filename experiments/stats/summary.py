"""Incremental sufficient statistics of one metric in one arm: count, mean and spread.

The event store keeps one `RunningMoments` per (experiment, arm, metric) and folds new values in as
they arrive; replicas or time buckets merge. Internally it keeps (count, mean, M2 = sum of squared
deviations) rather than raw sums of squares: for latencies around 100 ms summed over millions of
requests, sum(x^2) - n*mean^2 loses most of its digits to cancellation, while the update below does
not. `from_sums` still accepts the raw sums a SQL query produces, and `total_of_squares` gives them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class RunningMoments:
    """Count, mean and M2 of the values seen so far; immutable (each update returns a new value)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> RunningMoments:
        data = np.asarray(values, dtype=np.float64).ravel()
        if data.size == 0:
            return cls()
        mean = float(data.mean())
        return cls(int(data.size), mean, float(((data - mean) ** 2).sum()))

    @classmethod
    def from_sums(cls, count: int, total: float, total_of_squares: float) -> RunningMoments:
        """From n, sum(x) and sum(x^2), e.g. COUNT/SUM/SUM(x*x) in SQL."""
        if count < 0:
            raise ValueError("count must be non-negative")
        if count == 0:
            return cls()
        mean = total / count
        # Rounding in the raw sums can make M2 a hair negative for (nearly) constant values.
        return cls(count, mean, max(total_of_squares - count * mean * mean, 0.0))

    def add(self, value: float) -> RunningMoments:
        """Welford's update: one pass, numerically stable (Welford 1962, Technometrics 4)."""
        count = self.count + 1
        delta = value - self.mean
        mean = self.mean + delta / count
        return RunningMoments(count, mean, self.m2 + delta * (value - mean))

    def add_many(self, values: npt.ArrayLike) -> RunningMoments:
        return self.merge(RunningMoments.from_values(values))

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Combine two disjoint summaries (Chan, Golub, LeVeque 1979, the pairwise update)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return RunningMoments(count, mean, m2)

    @property
    def total(self) -> float:
        return self.mean * self.count

    @property
    def total_of_squares(self) -> float:
        return self.m2 + self.count * self.mean * self.mean

    @property
    def variance(self) -> float:
        """Sample variance (ddof = 1); NaN below 2 values, where it is undefined."""
        return self.m2 / (self.count - 1) if self.count >= 2 else float("nan")

    @property
    def std(self) -> float:
        return float(np.sqrt(self.variance))

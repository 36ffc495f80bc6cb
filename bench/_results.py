"""What one load-generator run measured, in the same shape whichever load generator produced it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Responses counted inside the measured window, and their latency percentiles."""

    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadResult:
        return cls(
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            duration_s=float(data["duration_s"]),
            p50_ms=float(data["p50_ms"]),
            p99_ms=float(data["p99_ms"]),
        )


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of values already sorted ascending.

    The smallest value with at least ``pct`` percent of the sample at or below it: the element at
    index ceil(pct/100 * n) - 1 (the inverse of the empirical distribution function; Hyndman and Fan,
    "Sample quantiles in statistical packages", 1996, definition 1). It never interpolates, so the
    answer is always a latency that was really observed.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {pct}")
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]

"""How long whole bursts took: from the first request sent to the last answer received.

A burst is a group of requests a user fires at once (the batching scenario). Each request's Locust
event carries the burst's id and size in its context; the burst is timed when its last member
reports. Members' own latencies stay in Locust's statistics; this adds the time the group took,
which is what a caller waiting on all of them sees, and what batching should keep low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BurstReport:
    count: int
    """Bursts whose every member reported."""
    unfinished: int
    """Bursts still missing members when the report was made (cut off by the end of the run)."""
    mean_size: float
    p50_ms: float
    p95_ms: float
    max_ms: float


def nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank quantile of an ascending sequence: the smallest value with at least
    `fraction` of the values at or below it (Hyndman and Fan's definition 1). 0.0 when empty."""
    if not ordered:
        return 0.0
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


class BurstTracker:
    """Collects member reports and turns each completed burst into one duration."""

    __slots__ = ("_durations_ms", "_pending", "_sizes")

    def __init__(self) -> None:
        # burst id -> [members still expected, earliest start, latest end], times in seconds.
        self._pending: dict[str, list[float]] = {}
        self._durations_ms: list[float] = []
        self._sizes: list[int] = []

    def member_done(self, burst: str, size: int, started_at: float, ended_at: float) -> None:
        state = self._pending.setdefault(burst, [float(size), started_at, ended_at])
        state[0] -= 1
        state[1] = min(state[1], started_at)
        state[2] = max(state[2], ended_at)
        if state[0] <= 0:
            del self._pending[burst]
            self._durations_ms.append((state[2] - state[1]) * 1000.0)
            self._sizes.append(size)

    def report(self) -> BurstReport:
        ordered = sorted(self._durations_ms)
        return BurstReport(
            count=len(ordered),
            unfinished=len(self._pending),
            mean_size=sum(self._sizes) / len(self._sizes) if self._sizes else 0.0,
            p50_ms=nearest_rank(ordered, 0.50),
            p95_ms=nearest_rank(ordered, 0.95),
            max_ms=ordered[-1] if ordered else 0.0,
        )

"""Sticky, monotone assignment: a stable hash of (salt, unit id) picks one of 10,000 buckets.

The same unit lands in the same bucket in every process, replica and restart (Python's `hash()` is
salted per process and is never used). Arms are laid out on the bucket line by weight; a ramp
(canary percent, A/B coverage) takes the first part of a span, so raising it only adds units and
never moves one that was already in (GrowthBook's and Optimizely's layout). Changing the weights of
arms moves boundaries and reassigns the units between them, which is why it starts a new phase.

Namespaces make experiments mutually exclusive: a second hash, salted by the namespace, gives each
unit one bucket of the namespace, and each experiment takes a disjoint range of them.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

# 10,000 buckets give 0.01 % resolution: a 0.5 % canary is exactly 50 buckets, and the line is
# coarse enough that a bucket index is cheap to store and compare.
BUCKETS = 10_000
# Separates salt from unit id inside the hashed bytes, so ("ab", "c") and ("a", "bc") differ.
_SEPARATOR = b"\x1f"
# A ramp threshold in buckets is computed from a float percent; this guard keeps 29.0 % from
# becoming 2899.9999 -> 2899 buckets.
_ROUNDING_GUARD = 1e-9


def stable_hash64(salt: str, unit_id: str) -> int:
    """A 64-bit hash of salt and unit id: BLAKE2b, the same on every machine and Python version."""
    digest = hashlib.blake2b(salt.encode() + _SEPARATOR + unit_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def bucket_of(salt: str, unit_id: str) -> int:
    """The unit's bucket in [0, BUCKETS). 2^64 mod 10,000 is tiny, so the modulo bias is ~1e-15."""
    return stable_hash64(salt, unit_id) % BUCKETS


def percent_to_buckets(percent: float) -> int:
    """How many buckets a percent of the line covers (rounded down, so a ramp never overshoots)."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percent must lie in [0, 100], got {percent}")
    return min(BUCKETS, math.floor(percent * BUCKETS / 100.0 + _ROUNDING_GUARD))


@dataclass(frozen=True, slots=True)
class ArmLayout:
    """Arms on the bucket line: arm i owns [starts[i], starts[i] + span_i) and serves its first
    `coverage` of it, [starts[i], ends[i]). Buckets outside every served range are not in the test."""

    arms: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def build(cls, weights: Sequence[tuple[str, float]], coverage_percent: float = 100.0) -> ArmLayout:
        total = sum(weight for _, weight in weights)
        if not weights or total <= 0.0 or any(weight < 0.0 for _, weight in weights):
            raise ValueError("arm weights must be non-negative with a positive sum")
        bounds = [0]
        running = 0.0
        for _, weight in weights:
            running += weight
            bounds.append(round(BUCKETS * running / total))
        bounds[-1] = BUCKETS
        covered = percent_to_buckets(coverage_percent)
        starts = tuple(bounds[:-1])
        # Coverage scales each span by the same fraction, floored so every arm's served range only
        # grows with coverage.
        ends = tuple(
            start + (end - start) * covered // BUCKETS for start, end in zip(starts, bounds[1:], strict=True)
        )
        return cls(tuple(name for name, _ in weights), starts, ends)

    def arm_at(self, bucket: int) -> str | None:
        """The arm serving this bucket, or None when the bucket is outside the covered ranges."""
        index = bisect_right(self.starts, bucket) - 1
        return self.arms[index] if bucket < self.ends[index] else None

    def shares(self) -> dict[str, float]:
        """Each arm's expected share of the units in the test (what sample-ratio checks compare to)."""
        widths = [end - start for start, end in zip(self.starts, self.ends, strict=True)]
        total = sum(widths)
        return {arm: (width / total if total else 0.0) for arm, width in zip(self.arms, widths, strict=True)}


@dataclass(frozen=True, slots=True)
class NamespaceGate:
    """Admits the units whose namespace bucket falls in [low, high); experiments sharing a namespace
    take disjoint ranges, so no unit is in two of them."""

    namespace: str
    low: int
    high: int

    def admits(self, unit_id: str) -> bool:
        return self.low <= bucket_of("ns:" + self.namespace, unit_id) < self.high

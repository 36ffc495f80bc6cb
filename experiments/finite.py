"""What keeps the analysis arithmetic finite, on new data and on whatever a store already holds.

New data is bounded where it enters: feedback values must be finite and within their metric's bounds
(`experiments.config.FeedbackBounds`), never beyond `MAX_MAGNITUDE`, and the store's aggregation skips
any non-finite increment. Data written by an older version may still hold sums that overflowed
(two values of 1e308 sum to infinity) or NaN (SQLite stores it as NULL): `usable_moments` and
`usable_unit_sums` decide, when the statistics are read, which sums the analysis may use; the rest
are left out and named, so a report says what it could not analyse instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# The largest feedback magnitude any bound may allow. Above 2**53 (about 9e15) a float no longer
# holds every integer, so no real count or amount is larger; at 1e15 a square is 1e30, and a sum of
# squares stays finite for more values than any store will ever hold (1.8e308 / 1e30).
MAX_MAGNITUDE = 1e15
# Per-unit totals add many values, so the unit-level sums get more room: a unit mean up to 1e30 keeps
# the delta method's fourth powers (1e120) and their products far below overflow.
MAX_UNIT_MEAN = 1e30


def finite(value: object) -> float:
    """`value` as a float, NaN when it is missing or not a number (a NULL read back from SQLite)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def usable_value(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def usable_moments(count: float, total: float, total_sq: float) -> bool:
    """Whether request-level sums of `count` bounded values are what bounded values can produce."""
    if not (math.isfinite(count) and math.isfinite(total) and math.isfinite(total_sq)) or count < 0:
        return False
    return abs(total) <= MAX_MAGNITUDE * count and 0.0 <= total_sq <= MAX_MAGNITUDE**2 * count


def unit_counter_of(key: str) -> tuple[str, ...]:
    """The per-unit counters a unit-level sum belongs to: "s:C" and "ss:C" to C, "x:C|D" to both."""
    kind, _, rest = key.partition(":")
    if kind == "x":
        numerator, _, denominator = rest.partition("|")
        return (numerator, denominator)
    return (rest,) if kind in ("s", "ss") else ()


def unusable_unit_counters(sums: Mapping[str, float]) -> set[str]:
    """Counters whose unit-level sums (over `sums["n"]` units) are not finite or beyond what bounded
    per-unit totals can produce; every sum that touches one of them must be left out."""
    units = finite(sums.get("n", 0.0))
    bad: set[str] = set()
    for key, raw in sums.items():
        value = finite(raw)
        kind = key.partition(":")[0]
        limit = MAX_UNIT_MEAN * units if kind == "s" else MAX_UNIT_MEAN**2 * units
        if not math.isfinite(value) or abs(value) > limit:
            bad.update(unit_counter_of(key))
    return bad

"""Which experiment arm each unit (user id) was shown, and the units that broke the split's promise.

Two promises are checked, chosen by the experiment's kind:
  sticky   (A/B):    a unit sees one arm for the whole run; a unit seen in two arms is a violation.
  monotone (canary): a ramp only moves units towards the candidate; a unit that saw the candidate
                     and later the baseline went backwards (expected only after a rollback).
A ledger lives in one Locust process; with several processes each checks only its own traffic.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

# Enough example unit ids to reproduce a violation by hand, few enough to print on one line.
EXAMPLE_LIMIT = 10


@dataclass(frozen=True, slots=True)
class LedgerReport:
    units: int
    """Distinct units that got an answer carrying an arm."""
    revisited_units: int
    """Units seen more than once: only these put stickiness to the test."""
    units_by_first_arm: dict[str, int]
    """Units counted under the first arm they were shown."""
    mixed_units: int
    """Units shown more than one arm (sticky violations for an A/B test)."""
    reversed_units: int
    """Units that went from the forward arm back to another one (0 without a forward arm)."""
    mixed_examples: tuple[str, ...]
    reversed_examples: tuple[str, ...]


class UnitLedger:
    """Records (unit, arm) sightings in arrival order."""

    __slots__ = ("_first_arm", "_forward_arm", "_last_arm", "_mixed", "_reversed", "_revisited")

    def __init__(self, forward_arm: str | None = None) -> None:
        # The arm a canary ramp moves units into; None when no direction is promised.
        self._forward_arm = forward_arm
        self._first_arm: dict[str, str] = {}
        self._last_arm: dict[str, str] = {}
        self._mixed: dict[str, None] = {}  # insertion-ordered set: the first offenders become examples
        self._reversed: dict[str, None] = {}
        self._revisited: set[str] = set()

    def record(self, unit: str, arm: str) -> None:
        first = self._first_arm.get(unit)
        if first is None:
            self._first_arm[unit] = first = arm
        else:
            self._revisited.add(unit)
        if first != arm:
            self._mixed[unit] = None
        if self._forward_arm is not None:
            if self._last_arm.get(unit) == self._forward_arm and arm != self._forward_arm:
                self._reversed[unit] = None
            self._last_arm[unit] = arm

    def report(self) -> LedgerReport:
        return LedgerReport(
            units=len(self._first_arm),
            revisited_units=len(self._revisited),
            units_by_first_arm=dict(sorted(Counter(self._first_arm.values()).items())),
            mixed_units=len(self._mixed),
            reversed_units=len(self._reversed),
            mixed_examples=tuple(itertools.islice(self._mixed, EXAMPLE_LIMIT)),
            reversed_examples=tuple(itertools.islice(self._reversed, EXAMPLE_LIMIT)),
        )

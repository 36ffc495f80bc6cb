"""Settings of an analysis: the level, the mixture test's tuning sample, and the burn-in."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.stats.sequential import DEFAULT_BURN_IN


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    alpha: float = 0.05
    expected_units: int = 10_000
    """N* of the mixture test: total units at which the confidence sequences are tightest."""
    burn_in: int = DEFAULT_BURN_IN

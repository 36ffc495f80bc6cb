"""Settings of an analysis: the level, the mixture test's tuning sample, the burn-in, the plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from experiments.stats.sequential import DEFAULT_BURN_IN


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    alpha: float = 0.05
    expected_units: int = 10_000
    """N* of the mixture test: total units at which the confidence sequences are tightest."""
    burn_in: int = DEFAULT_BURN_IN
    mde: float | None = None
    """The pre-registered minimum detectable effect, relative to the control (None: not planned)."""
    bayesian: bool = False
    """Add chance to beat control, expected loss and credible intervals to every comparison."""
    fixed_horizon: bool = False
    """Decide once, at the planned sample, on fixed-horizon p-values (else: sequential, at any look)."""
    winsorize: Mapping[str, float] = field(default_factory=dict)
    """Per metric, the percentile (50-100) at which its values are capped (`experiments.analysis_winsor`)."""
    segments: tuple[str, ...] = ()
    """Dimensions each goal is broken down by (`experiments.analysis_segments`)."""

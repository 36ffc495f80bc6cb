"""The status of an experiment: the model every report (JSON, Markdown, HTML) and the admin API render.

A frozen dataclass tree, built by `experiments.analysis.analyze`. Numbers that do not exist (a mean of
an arm without data, an interval side that is unbounded) are NaN or infinite here and `null` in JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Action = Literal["ship", "roll_back", "keep_running", "unhealthy"]
Role = Literal["goal", "guardrail", "descriptive"]
Direction = Literal["better", "worse", "changed", "none"]


@dataclass(frozen=True, slots=True)
class ArmReport:
    arm: str
    units: int
    exposures: int
    requests: int
    expected_share: float
    metrics: dict[str, float]
    """Each metric's value: a rate or mean per request, a per-unit mean for feedback, a quantile."""
    latency_quantiles: dict[str, float]
    """p50, p90, p99 of latency in seconds (from the histogram, within 1 %)."""
    labels: dict[str, dict[str, float]]
    """Per output: the share of each predicted class."""


@dataclass(frozen=True, slots=True)
class BayesReport:
    """The Bayesian reading of a comparison (`experiments.stats.bayes`), shown with `analysis: bayesian`."""

    chance_to_beat_control: float
    expected_loss: float
    credible_low: float
    credible_high: float


@dataclass(frozen=True, slots=True)
class CupedReport:
    """CUPED: the difference adjusted by a pre-period covariate per unit, and the variance it removed."""

    difference: float
    ci_low: float
    ci_high: float
    variance_reduction: float
    """1 - Var(adjusted) / Var(unadjusted): 0.3 means the interval is sqrt(0.7) as wide."""


@dataclass(frozen=True, slots=True)
class SegmentEffect:
    """A goal's effect within one segment (`experiments.analysis_segments`): fixed-horizon, over the
    segment's units, Holm-adjusted across every segment of the metric; descriptive, not a verdict."""

    dimension: str
    segment: str
    """The recorded value; "(none)" for units without one, "(other)" for the smallest segments pooled."""
    control_units: int
    treatment_units: int
    control_value: float
    treatment_value: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_value_adjusted: float
    significant: bool
    tested: bool
    """False below the small-segment rule (too few units per arm): shown, not tested, not adjusted."""


@dataclass(frozen=True, slots=True)
class SegmentHeterogeneity:
    """Does the effect differ between one dimension's tested segments? Cochran's Q."""

    dimension: str
    q: float
    degrees_of_freedom: int
    p_value: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment against control on one metric.

    `ci_*` and `p_value` are fixed-horizon (valid at one planned look); `cs_*` and
    `p_value_sequential` are always valid (peek as often as you like); `p_value_adjusted` is the
    sequential p after Holm (guardrails) or Benjamini-Hochberg (goals) across the comparisons of its
    role, and `significant` compares it with alpha.
    """

    metric: str
    role: Role
    control: str
    treatment: str
    control_value: float
    treatment_value: float
    difference: float
    ci_low: float
    ci_high: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    cs_low: float
    cs_high: float
    p_value: float
    p_value_sequential: float
    p_value_adjusted: float
    significant: bool
    direction: Direction
    enough_data: bool
    bayes: BayesReport | None = None
    cuped: CupedReport | None = None
    winsorized_at: float = float("nan")
    """The cap the metric's values were winsorised at (NaN: not winsorised)."""
    segments: tuple[SegmentEffect, ...] = ()
    """Per recorded segment of each configured dimension, the effect (goals only)."""
    heterogeneity: tuple[SegmentHeterogeneity, ...] = ()
    """Per dimension with two or more tested segments, Cochran's Q of the segment effects."""


@dataclass(frozen=True, slots=True)
class SrmReport:
    """Sample ratio mismatch: observed units per arm against the configured split."""

    observed: dict[str, int]
    expected_shares: dict[str, float]
    chi2: float
    p_value: float
    p_value_sequential: float
    mismatch: bool


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    problems: tuple[str, ...]
    srm: SrmReport | None
    crossovers: int
    forced: int
    excluded: int
    unusable: tuple[str, ...] = ()
    """Stored data left out of the analysis, one line each: sums that are not finite (written by an
    older version), and the count of non-finite feedback values a store refused to sum."""


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reasons: tuple[str, ...]
    winner: str | None = None
    more_units: int | None = None
    """For keep_running: about how many more units (all arms) the primary goal metric needs."""
    planned_units: int | None = None
    """Units (all arms) the sequential test needs for the pre-registered `mde` (None: no plan)."""
    progress: float | None = None
    """Units so far over `planned_units`."""


@dataclass(frozen=True, slots=True)
class ExperimentStatus:
    experiment: str
    kind: str
    phase: int
    control: str
    alpha: float
    expected_units: int
    generated_at: float
    arms: tuple[ArmReport, ...]
    comparisons: tuple[Comparison, ...]
    health: Health
    decision: Verdict

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        """JSON with NaN and infinities as null."""
        return orjson.dumps(self.to_dict())

    def comparison(self, metric: str, treatment: str | None = None) -> Comparison | None:
        for item in self.comparisons:
            if item.metric == metric and (treatment is None or item.treatment == treatment):
                return item
        return None

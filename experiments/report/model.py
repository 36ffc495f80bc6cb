"""The analyst's report of one experiment: one frozen tree that the JSON, Markdown and HTML renderers read.

    Report
      header        what ran: arms and clusters, unit sources, salt, allocation and ramp history,
                    alpha, sequential settings, the analysis window
      health        the banner: checks that block a decision (SRM, too few units, crossovers)
      decision      ship / roll_back / keep_running / unhealthy with reasons (`experiments.status`)
      verdict       the same, by its contract name: goals decide, guardrails block, health invalidates
      arms          per arm: units, exposures, requests, shares, metric values
      goals, guardrails, descriptive
                    comparisons against the control (`experiments.status.Comparison`)
      latency_quantiles
                    p50 / p95 / p99 per arm and their differences, with intervals
      timeline      the canary controller's decisions with their evidence
      shadow        shadow agreement, when the store holds any
      plots         the data behind the plots, each series at most a few hundred points
      methods       the appendix: each test and its reference

Numbers that do not exist (a mean of an empty arm, an unbounded interval side) are NaN or infinite
here and `null` in JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from experiments.status import Comparison, SrmReport, Verdict

CheckLevel = Literal["ok", "note", "warning", "blocking"]


@dataclass(frozen=True, slots=True)
class ArmSetup:
    name: str
    cluster: str
    expected_share: float
    """The arm's share of analysed units in the current phase."""


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    """One phase of the allocation history: a stretch of traffic split one way."""

    phase: int
    started: float
    """Wall-clock time of the phase's first analysed exposure (NaN when it has none)."""
    ended: float
    """Time of its last analysed exposure (NaN when it has none)."""
    expected_shares: dict[str, float] | None
    """The configured split when it is known (the current phase; canary steps from the timeline)."""
    units: dict[str, int]
    exposures: dict[str, int]
    current: bool
    change: str
    """What opened the phase, when the timeline says (a canary advance, an operator's change)."""


@dataclass(frozen=True, slots=True)
class StepPlan:
    percent: float
    min_duration_s: float
    min_units: int


@dataclass(frozen=True, slots=True)
class CanaryPlan:
    steps: tuple[StepPlan, ...]
    current_step: int
    guardrails: tuple[str, ...]
    """Each guardrail as "metric bound threshold", e.g. "error_rate max_increase 0.01"."""
    interval_s: float


@dataclass(frozen=True, slots=True)
class SequentialSetup:
    """How the always-valid tests are tuned (see `experiments.stats.sequential`)."""

    n_star: int
    burn_in: int
    mixture_rho: float
    srm_alpha: float
    srm_prior_concentration: float


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    """First analysed event of the current phase (NaN when none)."""
    end: float
    generated_at: float


@dataclass(frozen=True, slots=True)
class Header:
    experiment: str
    kind: str
    control: str
    arms: tuple[ArmSetup, ...]
    unit_sources: tuple[str, ...]
    salt: str
    state: str
    """running, paused, promoted or rolled_back."""
    phase: int
    coverage: float | None
    """A/B tests: percent of units in the test."""
    canary: CanaryPlan | None
    history: tuple[PhaseRecord, ...]
    alpha: float
    sequential: SequentialSetup
    window: Window
    metrics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    name: str
    level: CheckLevel
    detail: str


@dataclass(frozen=True, slots=True)
class HealthBanner:
    ok: bool
    """No check blocks the decision."""
    checks: tuple[HealthCheck, ...]
    srm: SrmReport | None
    crossovers: int
    forced: int
    excluded: int

    @property
    def blocking(self) -> tuple[HealthCheck, ...]:
        return tuple(check for check in self.checks if check.level == "blocking")


@dataclass(frozen=True, slots=True)
class ArmSummary:
    name: str
    cluster: str
    units: int
    exposures: int
    requests: int
    expected_share: float
    observed_share: float
    """The arm's share of analysed units."""
    metrics: dict[str, float]
    latency_quantiles: dict[str, float]
    labels: dict[str, dict[str, float]]
    """Per model output: the share of each predicted class."""


@dataclass(frozen=True, slots=True)
class QuantileEstimate:
    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True, slots=True)
class LatencyQuantileRow:
    """One latency quantile, treatment against control, with fixed-horizon rank-based intervals."""

    quantile: str
    level: float
    control: str
    treatment: str
    control_value: QuantileEstimate
    treatment_value: QuantileEstimate
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    enough_data: bool


@dataclass(frozen=True, slots=True)
class GuardrailEvidence:
    metric: str
    bound: str
    threshold: float
    status: str
    baseline: float
    candidate: float
    p_value: float
    confidence_bound: float
    candidate_n: int


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """A controller decision; consecutive holds in one phase are folded into one entry (`count`),
    which keeps the last hold's reasons and evidence."""

    time: float
    first_time: float
    count: int
    phase: int
    action: str
    reasons: tuple[str, ...]
    step: int | None
    percent: float | None
    units: dict[str, int]
    requests: dict[str, int]
    guardrails: tuple[GuardrailEvidence, ...]


@dataclass(frozen=True, slots=True)
class ShadowAgreement:
    """The latest shadow comparison tally the controller recorded as evidence."""

    time: float
    phase: int
    compared: int
    disagreement_rate: float
    agreement_rate: float
    limit: float
    p_value: float
    status: str


@dataclass(frozen=True, slots=True)
class LiftSeries:
    """Treatment - control of one metric as the current phase's data accumulated.

    `cs_low`/`cs_high` is the always-valid confidence sequence at each point (infinite inside the
    burn-in); the last point is the comparison in the report's tables.
    """

    metric: str
    control: str
    treatment: str
    time: tuple[float, ...]
    control_units: tuple[int, ...]
    treatment_units: tuple[int, ...]
    control_value: tuple[float, ...]
    treatment_value: tuple[float, ...]
    difference: tuple[float, ...]
    cs_low: tuple[float, ...]
    cs_high: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ExposureSeries:
    """Cumulative analysed exposures and units of one arm over time, all phases."""

    arm: str
    time: tuple[float, ...]
    exposures: tuple[int, ...]
    units: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LatencyCdf:
    """The empirical CDF of one arm's request latency in the current phase (from its histogram)."""

    arm: str
    requests: int
    latency_s: tuple[float, ...]
    cumulative: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PlotData:
    lift_metric: str | None
    lift: tuple[LiftSeries, ...]
    exposures: tuple[ExposureSeries, ...]
    phase_starts: tuple[tuple[int, float], ...]
    latency_cdfs: tuple[LatencyCdf, ...]
    notes: dict[str, str]
    """Per plot ("lift", "exposures", "latency"): why it is empty or thin, when it is."""


@dataclass(frozen=True, slots=True)
class MethodNote:
    topic: str
    method: str
    reference: str


@dataclass(frozen=True, slots=True)
class NoveltyRow:
    """A goal's effect on the units' events of one day since their first exposure (`report.novelty`)."""

    metric: str
    treatment: str
    day: str
    """"0", "1", ..., "7+"."""
    control_units: int
    treatment_units: int
    difference: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True, slots=True)
class Report:
    experiment: str
    kind: str
    generated_at: float
    header: Header
    health: HealthBanner
    decision: Verdict
    verdict: Verdict
    """The same verdict under the name the contract gives it: action, reasons in layers (goal,
    guardrail, health), winner, planned units and progress."""
    arms: tuple[ArmSummary, ...]
    goals: tuple[Comparison, ...]
    guardrails: tuple[Comparison, ...]
    descriptive: tuple[Comparison, ...]
    latency_quantiles: tuple[LatencyQuantileRow, ...]
    timeline: tuple[TimelineEntry, ...]
    shadow: ShadowAgreement | None
    plots: PlotData
    methods: tuple[MethodNote, ...]
    raw_events: str
    """How to get the raw events behind the report."""
    novelty: tuple[NoveltyRow, ...] = ()
    """Goals by days since first exposure (novelty and primacy), when the phase spans two days."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

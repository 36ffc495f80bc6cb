"""Config models of experiments: one per kind (ab, canary, blue_green, shadow), chosen by ``kind``.

The gateway config holds ``experiments: {NAME: ExperimentConfig}`` and a route points at one with
``backend: {experiment: NAME}``. Every model is frozen and refuses unknown keys; each is compiled once
into a split (`experiments.splits.build_split`) that the data path calls per request.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from experiments.finite import MAX_MAGNITUDE, usable_value
from gateway.core.config_types import Duration, StrictModel

# Metrics an experiment can report on: per-request latency and errors, latency quantiles, feedback
# joined to the request or unit later, and summaries of a named model output (class or score).
_METRICS = r"latency|error_rate|latency_p[1-9]\d?(?:\.\d+)?|(?:feedback|output):[A-Za-z0-9_.\-]+"
METRIC_PATTERN = re.compile(rf"^(?:{_METRICS})$")
# Guardrails may also watch the disagreement rate of shadow comparisons.
GUARDRAIL_METRIC_PATTERN = re.compile(rf"^(?:{_METRICS}|shadow_disagreement)$")
_UNIT_SOURCE = re.compile(r"^(?:header|cookie|jwt|query):[^\s:;,=]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Dimensions an exposure can record for segment breakdowns: the caller's tenant (from the
# authentication filter), the model version the request named, or a request header's value.
_SEGMENT = re.compile(r"^(?:tenant|model_version|header:[A-Za-z0-9!#$%&'*+.^_`|~\-]+)$")
# Each dimension splits every goal into as many tests as it has segments, and each is recorded on
# every exposure: a handful is what a report can show and the exposures can carry.
MAX_SEGMENT_DIMENSIONS = 5

# The issued sticky cookie and the header through which permitted callers force an arm.
DEFAULT_UNIT_SOURCES = ("cookie:turnout_uid",)
DEFAULT_FORCE_HEADER = "x-turnout-force-arm"
DEFAULT_FORCE_SCOPE = "experiments:force"
# Latency and errors are what every inference change can break, so they are watched by default.
DEFAULT_METRICS = ("latency", "error_rate")
# The customary significance level; the sequential tests keep it however often results are read.
DEFAULT_ALPHA = 0.05
# Total units (both arms) at which the confidence sequences are tuned to be tightest: a typical size
# for a week-long A/B test of an inference service. Any value keeps the error rate; it only moves
# where the intervals are narrowest.
DEFAULT_EXPECTED_UNITS = 10_000
# Arm weights are relative, so no real split needs more than a few digits; the bound keeps the sum
# of weights finite (inf or 1e308 would make every share NaN) and is far above any sane ratio.
MAX_ARM_WEIGHT = 1e6
# A pre-registered minimum detectable effect is relative to the control: above 10x is no plan.
MAX_RELATIVE_MDE = 10.0
# The size of the bucket line (see `experiments.assignment.BUCKETS`), repeated here so a namespace
# range is checked when the config is read.
BUCKET_COUNT = 10_000
# Shadow defaults: a thousand queued mirror requests bound memory to a few MB of bodies; four
# concurrent senders keep a mirror cluster busy without competing with primary traffic.
DEFAULT_SHADOW_QUEUE = 1000
DEFAULT_SHADOW_WORKERS = 4
# A mirror that has not answered in 30 s counts as failed: long enough for a cold model load.
DEFAULT_SHADOW_TIMEOUT_S = 30.0
# Numbers are "equal" within this absolute and relative tolerance: float32 round-off between two
# builds of the same model stays far below it, a real change does not.
DEFAULT_TOLERANCE = 1e-4


# A feedback metric's name as sent in `{"metric": NAME}`: what `feedback:NAME` allows in `metrics`.
FEEDBACK_METRIC_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


# The recorder's loss window. A group of events is sealed every 50 ms or as soon as 256 are queued,
# whichever comes first; with the journal a kill -9 loses at most the group being filled. 256 events
# are one journal write of about 30 KB and one SQLite transaction of a few milliseconds; 50 ms keeps
# dashboards live and costs at most 20 transactions a second at low traffic.
DEFAULT_FLUSH_INTERVAL_S = 0.05
DEFAULT_FLUSH_EVENTS = 256
# Events held in memory while the store is slow or away: a few MB, seconds of heavy traffic.
DEFAULT_RECORDER_CAPACITY = 10_000


def _as_list(value: Any) -> Any:
    """`unit: header:x-user-id` is short for a one-element list."""
    return [value] if isinstance(value, str) else value


class ClusterRef(StrictModel):
    """A cluster that serves one side of an experiment."""

    cluster: str = Field(min_length=1, description="The name of a cluster in `clusters`.")


class ArmConfig(ClusterRef):
    """One arm of an A/B test: its cluster and its share of units."""

    weight: float = Field(
        default=1.0,
        ge=0.0,
        le=MAX_ARM_WEIGHT,
        description=f"Relative share of units (any scale up to {MAX_ARM_WEIGHT:g}).",
    )


class NamespaceConfig(StrictModel):
    """Mutually exclusive experiments share a namespace, each taking a range of its 10,000 buckets."""

    name: str = Field(min_length=1, description="The namespace's name (its hash salt).")
    range: tuple[int, int] = Field(description="[low, high) buckets of the namespace this experiment takes.")

    @model_validator(mode="after")
    def _range_inside_line(self) -> Self:
        low, high = self.range
        if not 0 <= low < high <= BUCKET_COUNT:
            raise ValueError(f"namespace range must satisfy 0 <= low < high <= {BUCKET_COUNT}")
        return self


class RecorderConfig(StrictModel):
    """How experiment events reach the store: the bound on what a crash (kill -9) can lose.

    Events are sealed in groups: every `flush_interval`, or as soon as `flush_events` are queued.
    With the SQLite store a sealed group is first appended to a journal file beside the database
    (`journal`), so a crash loses only the group being filled: fewer than `flush_events` events, and
    none older than about `flush_interval`. The journal is replayed into the store at the next start.
    Without a journal (turned off, or the Redis store) a crash loses every event not yet written: the
    group being filled and the sealed groups still waiting for the store.
    """

    flush_interval: Duration = Field(
        default=DEFAULT_FLUSH_INTERVAL_S, gt=0.0, le=60.0, description="Longest wait before a write."
    )
    flush_events: int = Field(
        default=DEFAULT_FLUSH_EVENTS, ge=1, le=100_000, description="Queued events that start a write."
    )
    capacity: int = Field(
        default=DEFAULT_RECORDER_CAPACITY, ge=1, description="Most events held while the store is slow."
    )
    journal: bool = Field(
        default=True,
        description="With the SQLite store, journal sealed groups in SQLITE_PATH.recorder-journal first.",
    )


class FeedbackBounds(StrictModel):
    """The values a feedback metric may take; anything else is refused with a 400 when it is sent.

    The default admits every finite value up to `MAX_MAGNITUDE` (1e15) either way: enough for any
    count or amount, and far enough below overflow that no sum of stored values can become infinite.
    """

    min: float = Field(default=-MAX_MAGNITUDE, description="The smallest value accepted.")
    max: float = Field(default=MAX_MAGNITUDE, description="The largest value accepted.")

    @model_validator(mode="after")
    def _ordered_and_finite(self) -> Self:
        for bound in (self.min, self.max):
            if not usable_value(bound):
                raise ValueError(f"bounds must be finite numbers within ±{MAX_MAGNITUDE:g}, got {bound}")
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    def admits(self, value: float) -> bool:
        return self.min <= value <= self.max


# Feedback for a metric without declared bounds: finite and within ±MAX_MAGNITUDE.
DEFAULT_FEEDBACK_BOUNDS = FeedbackBounds()


class AssignedConfig(StrictModel):
    """Fields shared by the kinds that assign units: how units are found, kept and forced."""

    salt: str | None = Field(default=None, description="Hash salt; the experiment's name by default.")
    unit: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default=list(DEFAULT_UNIT_SOURCES),
        min_length=1,
        description="Unit id sources tried in order: header:NAME, cookie:NAME, jwt:CLAIM, query:NAME.",
    )
    issue_cookie: bool | None = Field(
        default=None,
        description="Issue a random sticky cookie (the first cookie source) when no unit id; by default "
        "when a cookie source is listed.",
    )
    namespace: NamespaceConfig | None = Field(default=None, description="A namespace range to run in.")
    force_header: str | None = Field(
        default=DEFAULT_FORCE_HEADER, description="Header naming an arm to force (needs `force_scope`)."
    )
    force_scope: str = Field(default=DEFAULT_FORCE_SCOPE, description="Scope a principal needs to force.")
    metrics: list[str] = Field(default=list(DEFAULT_METRICS), description="Metrics analysed per arm.")
    feedback_bounds: dict[str, FeedbackBounds] = Field(
        default_factory=dict,
        description="Per feedback metric (the name sent as `metric`), the values accepted: {min, max}. "
        "Undeclared metrics accept finite values within ±1e15.",
    )
    affinity: bool = Field(
        default=False,
        description="Consistent-hash endpoint affinity on the unit id inside the arm's cluster.",
    )
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0.0, lt=1.0, description="Significance level.")
    expected_units: int = Field(
        default=DEFAULT_EXPECTED_UNITS, gt=0, description="Units (all arms) where intervals are tightest."
    )
    mde: float | None = Field(
        default=None,
        gt=0.0,
        le=MAX_RELATIVE_MDE,
        description=(
            "Pre-registered minimum detectable effect, relative to the control (0.05: 5 %); the "
            "report plans the sample size for it and shows the progress towards it."
        ),
    )
    analysis: Literal["frequentist", "bayesian"] = Field(
        default="frequentist",
        description="bayesian adds chance to beat control, expected loss and credible intervals.",
    )
    winsorize: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Per metric (latency or feedback:NAME), the percentile (50-100) at which its values are "
            "capped before comparison, e.g. {feedback:revenue: 99}."
        ),
    )
    segments: list[str] = Field(
        default_factory=list,
        max_length=MAX_SEGMENT_DIMENSIONS,
        description=(
            "Dimensions recorded on every exposure and broken down in the report, each goal's effect "
            "per segment: tenant, model_version or header:NAME (e.g. [tenant, header:x-region])."
        ),
    )
    decision: Literal["sequential", "fixed_horizon"] = Field(
        default="sequential",
        description=(
            "sequential: always-valid results decide at any look; fixed_horizon: fixed-horizon "
            "results decide once, at the planned size (the mde's plan, else expected_units)."
        ),
    )

    @field_validator("winsorize")
    @classmethod
    def _winsorized_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, percentile in value.items():
            if metric != "latency" and not metric.startswith("feedback:"):
                raise ValueError(f"winsorize {metric!r}: only latency and feedback:NAME metrics are capped")
            if not 50.0 <= percentile < 100.0:
                raise ValueError(
                    f"winsorize {metric!r}: the percentile must lie in [50, 100), got {percentile}"
                )
        return value

    @field_validator("segments")
    @classmethod
    def _segment_dimensions(cls, value: list[str]) -> list[str]:
        lowered = [item.lower() if item.startswith("header:") else item for item in value]
        for item in lowered:
            if not _SEGMENT.match(item):
                raise ValueError(f"invalid segment {item!r}: use tenant, model_version or header:NAME")
        if len(set(lowered)) != len(lowered):
            raise ValueError("segments must be distinct")
        return lowered

    @field_validator("unit")
    @classmethod
    def _unit_sources(cls, value: list[str]) -> list[str]:
        for source in value:
            if not _UNIT_SOURCE.match(source):
                raise ValueError(f"invalid unit source {source!r}: use header:, cookie:, jwt: or query:NAME")
        return value

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, value: list[str]) -> list[str]:
        for metric in value:
            if not METRIC_PATTERN.match(metric):
                raise ValueError(
                    f"unknown metric {metric!r}: use latency, error_rate, latency_pNN, feedback:NAME or "
                    "output:NAME"
                )
        return value

    @field_validator("feedback_bounds")
    @classmethod
    def _feedback_metric_names(cls, value: dict[str, FeedbackBounds]) -> dict[str, FeedbackBounds]:
        for name in value:
            if not FEEDBACK_METRIC_PATTERN.match(name):
                raise ValueError(f"feedback metric {name!r}: 1 to 100 letters, digits, '_', '.' or '-'")
        return value

    def bounds_of(self, metric: str) -> FeedbackBounds:
        """The values feedback for `metric` may take."""
        return self.feedback_bounds.get(metric, DEFAULT_FEEDBACK_BOUNDS)

    @field_validator("force_header")
    @classmethod
    def _lower_header(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @model_validator(mode="after")
    def _cookie_to_issue(self) -> Self:
        if self.issue_cookie and not self._has_cookie_source:
            raise ValueError("issue_cookie needs a cookie:NAME unit source to name the cookie")
        return self

    @property
    def _has_cookie_source(self) -> bool:
        return any(source.startswith("cookie:") for source in self.unit)

    @property
    def issues_cookie(self) -> bool:
        """Whether a cookie is issued to requests without a unit id."""
        return self._has_cookie_source if self.issue_cookie is None else self.issue_cookie


class AbConfig(AssignedConfig):
    """An A/B(/n) test: units split across arms by weight, sticky by a hash of the unit id."""

    kind: Literal["ab"] = Field(description="The experiment kind.")
    arms: dict[str, ArmConfig] = Field(min_length=2, description="Arms by name; the first is the control.")
    coverage: float = Field(
        default=100.0, gt=0.0, le=100.0, description="Percent of units in the experiment (others: control)."
    )

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: dict[str, ArmConfig]) -> dict[str, ArmConfig]:
        for name in value:
            if not _NAME.match(name) or name == "unassigned":
                raise ValueError(f"invalid arm name {name!r}")
        if sum(arm.weight for arm in value.values()) <= 0.0:
            raise ValueError("at least one arm needs a positive weight")
        return value


class StepConfig(StrictModel):
    """One canary step: the candidate's percent of units, held until both minimums are met."""

    percent: float = Field(gt=0.0, le=100.0, description="Percent of units sent to the candidate.")
    min_duration: Duration = Field(default=0.0, description="Least time at this step before advancing.")
    min_units: int = Field(
        default=0, ge=0, description="Least candidate units at this step before advancing."
    )


class GuardrailConfig(StrictModel):
    """A limit the candidate must respect; exactly one bound is given.

    max_increase: candidate - baseline <= bound; max_ratio: candidate / baseline <= bound;
    min_ratio: candidate / baseline >= bound (for metrics where more is better); max: candidate <= bound.
    """

    metric: str = Field(description="error_rate, latency, latency_pNN, shadow_disagreement, feedback:X, ...")
    max_increase: float | None = Field(default=None, ge=0.0, description="Largest allowed absolute increase.")
    max_ratio: float | None = Field(default=None, gt=0.0, description="Largest allowed candidate/baseline.")
    min_ratio: float | None = Field(default=None, gt=0.0, description="Smallest allowed candidate/baseline.")
    max: float | None = Field(default=None, description="Largest allowed candidate value.")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not GUARDRAIL_METRIC_PATTERN.match(value):
            raise ValueError(f"unknown guardrail metric {value!r}")
        return value

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        given = [b for b in (self.max_increase, self.max_ratio, self.min_ratio, self.max) if b is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of max_increase, max_ratio, min_ratio, max")
        if self.metric == "shadow_disagreement" and self.max is None:
            raise ValueError("shadow_disagreement takes a `max` bound (a rate, not a comparison)")
        return self


class CanaryConfig(AssignedConfig):
    """A canary: the candidate takes a growing percent of units, step by step, under guardrails."""

    kind: Literal["canary"] = Field(description="The experiment kind.")
    baseline: ClusterRef = Field(description="The version serving today.")
    candidate: ClusterRef = Field(description="The version being rolled out.")
    steps: list[StepConfig] = Field(min_length=1, description="Steps in order; after the last: promoted.")
    guardrails: list[GuardrailConfig] = Field(default_factory=list, description="Limits that roll back.")
    interval: Duration = Field(default=10.0, gt=0.0, description="How often the controller evaluates.")

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: list[StepConfig]) -> list[StepConfig]:
        for before, after in itertools.pairwise(value):
            if after.percent <= before.percent:
                raise ValueError("step percents must increase")
        return value


class SmokeConfig(StrictModel):
    """A request sent to the standby color before a switch, and what its answer must be."""

    method: str = Field(default="GET", description="HTTP method.")
    path: str = Field(pattern=r"^/", description="Request path.")
    body: Any = Field(default=None, description="JSON body to send (none when null).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    expect_status: int = Field(default=200, ge=100, le=599, description="The status the answer must have.")
    expect_json: dict[str, Any] | None = Field(
        default=None, description="A subset the JSON answer must contain (nested objects match as subsets)."
    )
    timeout: Duration = Field(default=5.0, gt=0.0, description="How long to wait for the answer.")


class BlueGreenConfig(StrictModel):
    """Two colors, one active; a switch moves all traffic after the standby passes its checks."""

    kind: Literal["blue_green"] = Field(description="The experiment kind.")
    active: str = Field(description="The color serving traffic at start.")
    colors: dict[str, ClusterRef] = Field(min_length=2, max_length=2, description="The two colors.")
    smoke: SmokeConfig | None = Field(default=None, description="Smoke request checked before a switch.")

    @model_validator(mode="after")
    def _active_is_a_color(self) -> Self:
        if self.active not in self.colors:
            raise ValueError(f"active color {self.active!r} is not one of {sorted(self.colors)}")
        return self


class MirrorConfig(ClusterRef):
    """A cluster that receives copies of a fraction of the primary's requests."""

    fraction: float = Field(default=1.0, gt=0.0, le=1.0, description="Share of requests mirrored.")
    name: str | None = Field(default=None, description="Arm name in reports; the cluster name by default.")


class CompareConfig(StrictModel):
    """How mirror answers are compared with the primary's."""

    tolerance: float = Field(
        default=DEFAULT_TOLERANCE, ge=0.0, description="Absolute and relative tolerance."
    )
    outputs: list[str] | None = Field(
        default=None, description="Outputs compared; all shared ones by default."
    )


class ShadowConfig(StrictModel):
    """The primary answers; mirrors get copies off the request path and their answers are compared."""

    kind: Literal["shadow"] = Field(description="The experiment kind.")
    primary: ClusterRef = Field(description="The cluster whose answers clients receive.")
    mirrors: list[MirrorConfig] = Field(min_length=1, description="Clusters that receive copies.")
    queue_size: int = Field(default=DEFAULT_SHADOW_QUEUE, gt=0, description="Mirror jobs queued at most.")
    workers: int = Field(default=DEFAULT_SHADOW_WORKERS, gt=0, description="Concurrent mirror senders.")
    timeout: Duration = Field(
        default=DEFAULT_SHADOW_TIMEOUT_S, gt=0.0, description="Wait for a mirror's answer."
    )
    compare: CompareConfig = Field(default_factory=CompareConfig, description="Comparison settings.")

    @model_validator(mode="after")
    def _distinct_mirror_names(self) -> Self:
        names = [mirror.name or mirror.cluster for mirror in self.mirrors]
        if len(set(names)) != len(names) or "primary" in names:
            raise ValueError("mirror names (default: their clusters) must be distinct and not 'primary'")
        return self


ExperimentConfig = Annotated[
    AbConfig | CanaryConfig | BlueGreenConfig | ShadowConfig, Field(discriminator="kind")
]


def experiment_clusters(config: AbConfig | CanaryConfig | BlueGreenConfig | ShadowConfig) -> list[str]:
    """Every cluster an experiment sends traffic to (for the gateway's cross-reference check)."""
    if isinstance(config, AbConfig):
        return [arm.cluster for arm in config.arms.values()]
    if isinstance(config, CanaryConfig):
        return [config.baseline.cluster, config.candidate.cluster]
    if isinstance(config, BlueGreenConfig):
        return [color.cluster for color in config.colors.values()]
    return [config.primary.cluster, *(mirror.cluster for mirror in config.mirrors)]

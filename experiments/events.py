"""What experiments record: exposures, outcomes, feedback, and the controller's decisions.

The data path makes an `Exposure` when a split assigns a request and an `Outcome` in the logging
phase (`exposure_for` and `outcome_for` build them from the `Assignment`); clients or other services
send `Feedback` later (a conversion, a label), which the store joins to the arm that served the
exposure or unit. An exposure is named by its exposure id, which the gateway makes (unique, never the
client's choice) and returns to the client; the client's `x-request-id` is kept for tracing only.
Times are wall-clock seconds (`time.time()`), so they survive restarts and compare across replicas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.splits.base import Assignment


@dataclass(frozen=True, slots=True)
class OutputSummary:
    """A compact view of one model output in a response: predicted classes, or a mean score."""

    output: str
    labels: tuple[str, ...] = ()
    """One predicted class per row (argmax of probabilities, or a label output's values)."""
    score: float | None = None
    """Mean over rows of a numeric output with one value per row (or of the top probability)."""


@dataclass(frozen=True, slots=True)
class Exposure:
    experiment: str
    arm: str
    unit_id: str | None
    request_id: str
    time: float
    phase: int = 0
    forced: bool = False
    excluded: bool = False
    exposure_id: str = ""
    """The gateway's id of this exposure; empty means the request id is the exposure id."""
    segments: tuple[tuple[str, str], ...] = ()
    """(dimension, value) of each segment dimension the experiment records (`segments:` in its
    config): tenant, model_version, header:NAME; "" where the request had none."""

    @property
    def analyzed(self) -> bool:
        return not (self.forced or self.excluded) and bool(self.unit_id)

    @property
    def key(self) -> str:
        """What feedback names to join this exposure."""
        return self.exposure_id or self.request_id


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    experiment: str
    arm: str
    unit_id: str | None
    time: float
    latency_s: float
    status: int
    error: bool
    response_bytes: int = 0
    outputs: tuple[OutputSummary, ...] = ()
    phase: int = 0
    forced: bool = False
    excluded: bool = False

    @property
    def analyzed(self) -> bool:
        return not (self.forced or self.excluded) and bool(self.unit_id)


@dataclass(frozen=True, slots=True)
class Feedback:
    """A value for a metric, joined later by exposure id (preferred) or unit id.

    `request_id` is the older name of the exposure id: it joins the exposure of that id (the gateway
    uses its own request id as the exposure id when the client sent none). `experiment` narrows the
    join to one experiment; without it the value joins every experiment the exposure (or unit) was in.
    """

    metric: str
    value: float
    time: float
    request_id: str | None = None
    unit_id: str | None = None
    experiment: str | None = None
    exposure_id: str | None = None

    def __post_init__(self) -> None:
        if not self.key and not self.unit_id:
            raise ValueError("feedback needs an exposure_id, request_id or unit_id to join on")

    @property
    def key(self) -> str | None:
        """The exposure id this value joins, if it names one."""
        return self.exposure_id or self.request_id or None


@dataclass(frozen=True, slots=True)
class Decision:
    """A controller's decision with the evidence behind it (stored, shown in the canary timeline)."""

    experiment: str
    time: float
    phase: int
    action: str
    """advance, promote, rollback, hold."""
    reasons: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "time": self.time,
            "phase": self.phase,
            "action": self.action,
            "reasons": list(self.reasons),
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Decision:
        return cls(
            experiment=str(payload["experiment"]),
            time=float(payload["time"]),
            phase=int(payload["phase"]),
            action=str(payload["action"]),
            reasons=tuple(payload.get("reasons", ())),
            evidence=dict(payload.get("evidence", {})),
        )


Event = Exposure | Outcome | Feedback

# HTTP statuses from this value up count as errors of the serving arm: a 4xx is the caller's fault
# and says nothing about the model version.
SERVER_ERROR_STATUS = 500


def exposure_for(
    assignment: Assignment,
    request_id: str,
    now: float,
    exposure_id: str = "",
    segments: tuple[tuple[str, str], ...] = (),
) -> Exposure:
    return Exposure(
        experiment=assignment.experiment,
        arm=assignment.arm,
        unit_id=assignment.unit_id,
        request_id=request_id,
        time=now,
        phase=assignment.phase,
        forced=assignment.forced,
        excluded=assignment.excluded,
        exposure_id=exposure_id,
        segments=segments,
    )


def outcome_for(
    assignment: Assignment,
    request_id: str,
    now: float,
    *,
    latency_s: float,
    status: int,
    response_bytes: int = 0,
    outputs: tuple[OutputSummary, ...] = (),
    failed: bool = False,
) -> Outcome:
    """The outcome of an assigned request; `failed` marks a transport failure with no status."""
    return Outcome(
        request_id=request_id,
        experiment=assignment.experiment,
        arm=assignment.arm,
        unit_id=assignment.unit_id,
        time=now,
        latency_s=latency_s,
        status=status,
        error=failed or status >= SERVER_ERROR_STATUS or status == 0,
        response_bytes=response_bytes,
        outputs=outputs,
        phase=assignment.phase,
        forced=assignment.forced,
        excluded=assignment.excluded,
    )

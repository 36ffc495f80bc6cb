"""Canary split: the candidate serves the units whose bucket is below the current percent.

Raising the percent only adds buckets to the candidate, so a unit that saw the candidate keeps it
through every later step (zero reassignment from 1 % to 100 %). Each percent is its own phase, so the
controller compares the arms only over traffic split the same way. Pausing holds the current step
(traffic keeps flowing; the controller stops advancing but still rolls back on a regression).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from experiments.assignment import BUCKETS, bucket_of, percent_to_buckets
from experiments.config import CanaryConfig
from experiments.splits.base import (
    UNASSIGNED,
    Assignment,
    Clock,
    InvalidTransition,
    SplitStatus,
    StatefulSplit,
    build_gate,
)
from gateway.core.context import RequestContext

BASELINE = "baseline"
CANDIDATE = "candidate"
_ACTIVE = frozenset({SplitStatus.RUNNING, SplitStatus.PAUSED})
_FINISHED = frozenset({SplitStatus.PROMOTED, SplitStatus.ROLLED_BACK})


def _shares(candidate_buckets: int) -> dict[str, float]:
    candidate = candidate_buckets / BUCKETS
    return {BASELINE: 1.0 - candidate, CANDIDATE: candidate}


@dataclass(frozen=True, slots=True)
class CanaryState:
    revision: int
    phase: int
    status: SplitStatus
    step: int
    """Index of the current step in the config's steps."""
    percent: float
    step_started_at: float
    """Wall-clock time the current step (phase) began: min_duration survives restarts."""
    changed_at: float
    final_percent: float | None = None
    """Once promoted or rolled back: the percent of the last step, the last phase with both arms
    (what an analysis of the finished canary covers)."""
    threshold: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", percent_to_buckets(self.percent))

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "phase": self.phase,
            "status": self.status.value,
            "step": self.step,
            "percent": self.percent,
            "step_started_at": self.step_started_at,
            "changed_at": self.changed_at,
            "final_percent": self.final_percent,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> CanaryState:
        return cls(
            revision=int(payload["revision"]),
            phase=int(payload["phase"]),
            status=SplitStatus(payload["status"]),
            step=int(payload["step"]),
            percent=float(payload["percent"]),
            step_started_at=float(payload["step_started_at"]),
            changed_at=float(payload["changed_at"]),
            final_percent=_optional_float(payload.get("final_percent")),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


class CanarySplit(StatefulSplit[CanaryState]):
    kind = "canary"

    def __init__(
        self, name: str, config: CanaryConfig, *, secure_cookie: bool = False, clock: Clock = time.time
    ) -> None:
        self.salt = config.salt or name
        self.clusters = {BASELINE: config.baseline.cluster, CANDIDATE: config.candidate.cluster}
        self.steps: Sequence[float] = tuple(step.percent for step in config.steps)
        self._gate = build_gate(config, self.clusters, secure_cookie=secure_cookie)
        now = clock()
        super().__init__(name, CanaryState(0, 0, SplitStatus.RUNNING, 0, self.steps[0], now, now), clock)

    def choose(self, ctx: RequestContext) -> Assignment:
        state = self._state
        entry = self._gate.enter(ctx)
        unit_id, cookie = entry.unit_id, entry.set_cookie
        if entry.forced_arm is not None:
            arm = entry.forced_arm
            return Assignment(self.name, arm, self.clusters[arm], unit_id, state.phase, True, False, cookie)
        if state.status not in _ACTIVE:
            arm = CANDIDATE if state.status is SplitStatus.PROMOTED else BASELINE
            return Assignment(self.name, arm, self.clusters[arm], unit_id, state.phase, False, True, cookie)
        if not entry.admitted or unit_id is None:
            cluster = self.clusters[BASELINE]
            return Assignment(self.name, UNASSIGNED, cluster, unit_id, state.phase, False, True, cookie)
        arm = CANDIDATE if bucket_of(self.salt, unit_id) < state.threshold else BASELINE
        return Assignment(self.name, arm, self.clusters[arm], unit_id, state.phase, False, False, cookie)

    def arm_of(self, unit_id: str) -> str:
        """The arm a unit gets now, before forcing (UNASSIGNED outside the namespace)."""
        state = self._state
        if state.status not in _ACTIVE:
            return CANDIDATE if state.status is SplitStatus.PROMOTED else BASELINE
        if self._gate.namespace is not None and not self._gate.namespace.admits(unit_id):
            return UNASSIGNED
        return CANDIDATE if bucket_of(self.salt, unit_id) < state.threshold else BASELINE

    def shares(self) -> dict[str, float]:
        return _shares(self._state.threshold)

    def analysed_phase(self) -> tuple[int, dict[str, float]]:
        """The phase an analysis covers, with its arms' expected shares. A promoted or rolled-back
        canary sends all traffic to one arm in its current phase, so its analysis is that of its
        last step: the phase before, at that step's percent."""
        state = self._state
        if state.status in _FINISHED and state.phase > 0:
            percent = state.final_percent if state.final_percent is not None else self.steps[state.step]
            return state.phase - 1, _shares(percent_to_buckets(percent))
        return state.phase, self.shares()

    @property
    def is_last_step(self) -> bool:
        return self._state.step >= len(self.steps) - 1

    def advance(self) -> CanaryState:
        """Move to the next step (a new phase), or promote after the last one."""
        state = self._require(_ACTIVE)
        if self.is_last_step:
            return self.promote()
        step = state.step + 1
        return self._new_phase(state, step=step, percent=self.steps[step], status=state.status)

    def set_percent(self, percent: float) -> CanaryState:
        """An operator's override of the current step's percent (a new phase)."""
        state = self._require(_ACTIVE)
        percent_to_buckets(percent)  # refuses values outside [0, 100] before anything changes
        return self._new_phase(state, step=state.step, percent=percent, status=state.status)

    def promote(self) -> CanaryState:
        state = self._require(_ACTIVE)
        return self._new_phase(state, step=state.step, percent=100.0, status=SplitStatus.PROMOTED)

    def rollback(self) -> CanaryState:
        state = self._require(_ACTIVE)
        return self._new_phase(state, step=state.step, percent=0.0, status=SplitStatus.ROLLED_BACK)

    def restart(self) -> CanaryState:
        """Start again from the first step (after a rollback, once the candidate is fixed)."""
        state = self._state
        return self._new_phase(state, step=0, percent=self.steps[0], status=SplitStatus.RUNNING)

    def pause(self) -> CanaryState:
        state = self._require({SplitStatus.RUNNING})
        return self._swap(
            replace(state, revision=state.revision + 1, status=SplitStatus.PAUSED, changed_at=self._clock())
        )

    def resume(self) -> CanaryState:
        state = self._require({SplitStatus.PAUSED})
        return self._swap(
            replace(state, revision=state.revision + 1, status=SplitStatus.RUNNING, changed_at=self._clock())
        )

    def _require(self, allowed: frozenset[SplitStatus] | set[SplitStatus]) -> CanaryState:
        state = self._state
        if state.status not in allowed:
            raise InvalidTransition(f"not possible while the canary is {state.status.value}")
        return state

    def _new_phase(
        self, state: CanaryState, *, step: int, percent: float, status: SplitStatus
    ) -> CanaryState:
        now = self._clock()
        final = state.percent if status in _FINISHED else None
        return self._swap(
            CanaryState(state.revision + 1, state.phase + 1, status, step, percent, now, now, final)
        )

    def _state_from_dict(self, payload: Mapping[str, Any]) -> CanaryState:
        return CanaryState.from_dict(payload)

"""A/B(/n) split: each unit's bucket falls in one arm's range, laid out by weight.

Coverage below 100 % serves each arm the first part of its range; units outside get the control and
are not analysed. Changing weights moves range boundaries (reassigning the units between them) and so
starts a new phase; changing coverage does not (no unit changes arm, the arms' shares stay equal).
A paused test serves everyone the control, a promoted one its winner, a rolled-back one the control;
none of that traffic is analysed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from experiments.assignment import ArmLayout, bucket_of
from experiments.config import AbConfig
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


@dataclass(frozen=True, slots=True)
class AbState:
    revision: int
    phase: int
    status: SplitStatus
    weights: tuple[tuple[str, float], ...]
    coverage: float
    winner: str | None
    changed_at: float
    layout: ArmLayout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", ArmLayout.build(self.weights, self.coverage))

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "phase": self.phase,
            "status": self.status.value,
            "weights": [[arm, weight] for arm, weight in self.weights],
            "coverage": self.coverage,
            "winner": self.winner,
            "changed_at": self.changed_at,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> AbState:
        return cls(
            revision=int(payload["revision"]),
            phase=int(payload["phase"]),
            status=SplitStatus(payload["status"]),
            weights=tuple((str(arm), float(weight)) for arm, weight in payload["weights"]),
            coverage=float(payload["coverage"]),
            winner=payload.get("winner"),
            changed_at=float(payload["changed_at"]),
        )


class AbSplit(StatefulSplit[AbState]):
    kind = "ab"

    def __init__(
        self, name: str, config: AbConfig, *, secure_cookie: bool = False, clock: Clock = time.time
    ) -> None:
        self.salt = config.salt or name
        self.clusters = {arm: spec.cluster for arm, spec in config.arms.items()}
        self.control = next(iter(config.arms))
        self._gate = build_gate(config, self.clusters, secure_cookie=secure_cookie)
        weights = tuple((arm, spec.weight) for arm, spec in config.arms.items())
        initial = AbState(0, 0, SplitStatus.RUNNING, weights, config.coverage, None, clock())
        super().__init__(name, initial, clock)

    def choose(self, ctx: RequestContext) -> Assignment:
        state = self._state
        entry = self._gate.enter(ctx)
        unit_id, cookie = entry.unit_id, entry.set_cookie
        if entry.forced_arm is not None:
            arm = entry.forced_arm
            return Assignment(self.name, arm, self.clusters[arm], unit_id, state.phase, True, False, cookie)
        if state.status is not SplitStatus.RUNNING:
            arm = state.winner or self.control
            return Assignment(self.name, arm, self.clusters[arm], unit_id, state.phase, False, True, cookie)
        arm_or_none = (
            state.layout.arm_at(bucket_of(self.salt, unit_id)) if entry.admitted and unit_id else None
        )
        if arm_or_none is None:
            cluster = self.clusters[self.control]
            return Assignment(self.name, UNASSIGNED, cluster, unit_id, state.phase, False, True, cookie)
        return Assignment(
            self.name, arm_or_none, self.clusters[arm_or_none], unit_id, state.phase, False, False, cookie
        )

    def arm_of(self, unit_id: str) -> str:
        """The arm a unit gets now, before forcing (UNASSIGNED outside the namespace or coverage)."""
        state = self._state
        if state.status is not SplitStatus.RUNNING:
            return state.winner or self.control
        if self._gate.namespace is not None and not self._gate.namespace.admits(unit_id):
            return UNASSIGNED
        return state.layout.arm_at(bucket_of(self.salt, unit_id)) or UNASSIGNED

    def shares(self) -> dict[str, float]:
        return self._state.layout.shares()

    def set_weights(self, weights: Mapping[str, float]) -> AbState:
        """New weights for every arm; a new phase starts (boundaries move, some units change arm)."""
        if set(weights) != set(self.clusters):
            raise ValueError(f"weights must name every arm: {sorted(self.clusters)}")
        ordered = tuple((arm, float(weights[arm])) for arm in self.clusters)
        ArmLayout.build(ordered)  # refuses negative or all-zero weights before anything changes
        state = self._state
        return self._swap(
            replace(
                state,
                revision=state.revision + 1,
                phase=state.phase + 1,
                weights=ordered,
                changed_at=self._clock(),
            )
        )

    def set_coverage(self, percent: float) -> AbState:
        """Serve the experiment to `percent` of units; raising it keeps every unit already in."""
        if not 0.0 < percent <= 100.0:
            raise ValueError("coverage must lie in (0, 100]")
        state = self._state
        return self._swap(
            replace(state, revision=state.revision + 1, coverage=percent, changed_at=self._clock())
        )

    def pause(self) -> AbState:
        return self._move(SplitStatus.PAUSED, {SplitStatus.RUNNING}, None)

    def resume(self) -> AbState:
        return self._move(SplitStatus.RUNNING, {SplitStatus.PAUSED}, None)

    def promote(self, arm: str) -> AbState:
        """End the test with `arm` serving everyone."""
        if arm not in self.clusters:
            raise ValueError(f"unknown arm {arm!r}")
        return self._move(SplitStatus.PROMOTED, {SplitStatus.RUNNING, SplitStatus.PAUSED}, arm)

    def rollback(self) -> AbState:
        """End the test with the control serving everyone."""
        return self._move(SplitStatus.ROLLED_BACK, {SplitStatus.RUNNING, SplitStatus.PAUSED}, self.control)

    def _move(self, status: SplitStatus, allowed: set[SplitStatus], winner: str | None) -> AbState:
        state = self._state
        if state.status not in allowed:
            raise InvalidTransition(f"cannot go from {state.status.value} to {status.value}")
        return self._swap(
            replace(
                state, revision=state.revision + 1, status=status, winner=winner, changed_at=self._clock()
            )
        )

    def _state_from_dict(self, payload: Mapping[str, Any]) -> AbState:
        return AbState.from_dict(payload)

"""Shadow split: the primary answers every request; each mirror gets a copy of a random fraction.

Sampling is per request (independent of the unit): the comparison is between two answers to the same
request, so it needs no stickiness. Pausing stops the copies; the primary is untouched either way.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from experiments.config import ShadowConfig
from experiments.splits.base import Assignment, Clock, InvalidTransition, SplitStatus, StatefulSplit
from gateway.core.context import RequestContext

PRIMARY = "primary"


@dataclass(frozen=True, slots=True)
class ShadowState:
    revision: int
    phase: int
    status: SplitStatus
    fractions: tuple[tuple[str, float], ...]
    changed_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "phase": self.phase,
            "status": self.status.value,
            "fractions": [[name, fraction] for name, fraction in self.fractions],
            "changed_at": self.changed_at,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ShadowState:
        return cls(
            revision=int(payload["revision"]),
            phase=int(payload["phase"]),
            status=SplitStatus(payload["status"]),
            fractions=tuple((str(name), float(fraction)) for name, fraction in payload["fractions"]),
            changed_at=float(payload["changed_at"]),
        )


class ShadowSplit(StatefulSplit[ShadowState]):
    kind = "shadow"

    def __init__(
        self, name: str, config: ShadowConfig, *, rng: random.Random | None = None, clock: Clock = time.time
    ) -> None:
        self.primary_cluster = config.primary.cluster
        self.mirror_clusters = {(mirror.name or mirror.cluster): mirror.cluster for mirror in config.mirrors}
        self._random = (rng or random.Random()).random
        fractions = tuple(((m.name or m.cluster), m.fraction) for m in config.mirrors)
        super().__init__(name, ShadowState(0, 0, SplitStatus.RUNNING, fractions, clock()), clock)

    def choose(self, ctx: RequestContext) -> Assignment:
        state = self._state
        mirrors: tuple[tuple[str, str], ...] = ()
        if state.status is SplitStatus.RUNNING:
            draw = self._random
            mirrors = tuple(
                (name, self.mirror_clusters[name]) for name, fraction in state.fractions if draw() < fraction
            )
        return Assignment(
            self.name, PRIMARY, self.primary_cluster, None, state.phase, excluded=True, mirrors=mirrors
        )

    def shares(self) -> dict[str, float]:
        return {PRIMARY: 1.0}

    def set_fraction(self, mirror: str, fraction: float) -> ShadowState:
        if mirror not in self.mirror_clusters:
            raise ValueError(f"unknown mirror {mirror!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("a mirror fraction must lie in [0, 1]")
        state = self._state
        fractions = tuple((name, fraction if name == mirror else old) for name, old in state.fractions)
        return self._swap(
            replace(state, revision=state.revision + 1, fractions=fractions, changed_at=self._clock())
        )

    def pause(self) -> ShadowState:
        return self._move(SplitStatus.PAUSED, SplitStatus.RUNNING)

    def resume(self) -> ShadowState:
        return self._move(SplitStatus.RUNNING, SplitStatus.PAUSED)

    def _move(self, status: SplitStatus, required: SplitStatus) -> ShadowState:
        state = self._state
        if state.status is not required:
            raise InvalidTransition(f"cannot go from {state.status.value} to {status.value}")
        return self._swap(
            replace(state, revision=state.revision + 1, status=status, changed_at=self._clock())
        )

    def _state_from_dict(self, payload: Mapping[str, Any]) -> ShadowState:
        return ShadowState.from_dict(payload)

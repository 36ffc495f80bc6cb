"""Blue-green split: all traffic to the active color; a switch moves it to the standby at once.

A switch is refused unless an injected check says the standby is ready (healthy endpoints, and the
smoke request answered as expected; see `experiments.smoke.SmokeCheck`). The check runs before the
state changes, and the switch is dropped if the state moved while the check ran.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from experiments.config import BlueGreenConfig
from experiments.splits.base import Assignment, Clock, InvalidTransition, SplitStatus, StatefulSplit
from gateway.core.context import RequestContext


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    reason: str


StandbyCheck = Callable[[str, str], Awaitable[CheckResult]]
"""check(color, cluster) -> whether that color may take all traffic, and why (not)."""


class SwitchRefused(Exception):
    """The standby failed its readiness check; the message says why."""


@dataclass(frozen=True, slots=True)
class BlueGreenState:
    revision: int
    phase: int
    status: SplitStatus
    active: str
    changed_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "phase": self.phase,
            "status": self.status.value,
            "active": self.active,
            "changed_at": self.changed_at,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> BlueGreenState:
        return cls(
            revision=int(payload["revision"]),
            phase=int(payload["phase"]),
            status=SplitStatus(payload["status"]),
            active=str(payload["active"]),
            changed_at=float(payload["changed_at"]),
        )


class BlueGreenSplit(StatefulSplit[BlueGreenState]):
    kind = "blue_green"

    def __init__(self, name: str, config: BlueGreenConfig, *, clock: Clock = time.time) -> None:
        self.clusters = {color: ref.cluster for color, ref in config.colors.items()}
        super().__init__(name, BlueGreenState(0, 0, SplitStatus.RUNNING, config.active, clock()), clock)

    def choose(self, ctx: RequestContext) -> Assignment:
        state = self._state
        # Not a comparison of arms: every request goes to one color, so nothing is analysed.
        return Assignment(
            self.name, state.active, self.clusters[state.active], None, state.phase, excluded=True
        )

    def shares(self) -> dict[str, float]:
        active = self._state.active
        return {color: (1.0 if color == active else 0.0) for color in self.clusters}

    @property
    def standby(self) -> str:
        return next(color for color in self.clusters if color != self._state.active)

    async def switch(self, check: StandbyCheck) -> BlueGreenState:
        """Make the standby active if `check` passes; raises `SwitchRefused` with the reason if not."""
        before = self._state
        target = self.standby
        result = await check(target, self.clusters[target])
        if not result.ok:
            raise SwitchRefused(f"switch to {target} refused: {result.reason}")
        if self._state.revision != before.revision:
            raise InvalidTransition("the state changed while the standby was checked; retry the switch")
        now = self._clock()
        return self._swap(BlueGreenState(before.revision + 1, before.phase + 1, before.status, target, now))

    def _state_from_dict(self, payload: Mapping[str, Any]) -> BlueGreenState:
        return BlueGreenState.from_dict(payload)

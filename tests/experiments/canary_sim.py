"""A seeded canary rollout driven through the real `CanaryController`, on an in-memory store.

Each controller tick, a fixed number of new units arrive; the split's current percent decides how many
go to the candidate; every unit sends `requests_per_unit` requests with independent errors at its
arm's rate and lognormal latencies. The store keeps the per-unit sums the SQLite and Redis stores
keep (`experiments.store.base.ArmData`), so the controller sees exactly what it would see in
production, without the events' I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.config import CanaryConfig
from experiments.controller import CanaryController
from experiments.events import Decision
from experiments.lease import Lease, LocalLease
from experiments.splits.base import SplitStatus
from experiments.splits.canary import BASELINE, CANDIDATE, CanarySplit
from experiments.stats import RunningMoments
from experiments.store.base import (
    MOMENT_LATENCY,
    UNIT_ERRORS,
    UNIT_LATENCY,
    UNIT_REQUESTS,
    ArmData,
    PhaseData,
)

_COUNTERS = (UNIT_ERRORS, UNIT_LATENCY)


@dataclass
class _Arm:
    units: int = 0
    requests: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, errors: np.ndarray, latency: np.ndarray, requests: int) -> None:
        """Units with `requests` requests each: their error counts and latency totals."""
        self.units += errors.size
        self.requests += errors.size * requests
        for name, values in ((UNIT_ERRORS, errors), (UNIT_LATENCY, latency)):
            self.sums[f"s:{name}"] = self.sums.get(f"s:{name}", 0.0) + float(values.sum())
            self.sums[f"ss:{name}"] = self.sums.get(f"ss:{name}", 0.0) + float((values**2).sum())
            cross = f"x:{name}|{UNIT_REQUESTS}"
            self.sums[cross] = self.sums.get(cross, 0.0) + float(values.sum()) * requests
        self.sums[f"s:{UNIT_REQUESTS}"] = float(self.requests)
        self.sums[f"ss:{UNIT_REQUESTS}"] = float(self.units * requests**2)

    def data(self, name: str) -> ArmData:
        moments = {MOMENT_LATENCY: RunningMoments.from_sums(self.requests, 0.0, 0.0)}
        return ArmData(name, units=self.units, exposures=self.requests, moments=moments, unit_sums=self.sums)


class SimStore:
    """What the controller reads and writes, in memory."""

    def __init__(self) -> None:
        self.arms: dict[int, dict[str, _Arm]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.decided: list[Decision] = []

    def arm(self, phase: int, name: str) -> _Arm:
        return self.arms.setdefault(phase, {}).setdefault(name, _Arm())

    async def phase_data(self, experiment: str, phase: int) -> PhaseData:
        arms = self.arms.get(phase, {})
        return PhaseData(experiment, phase, {name: arm.data(name) for name, arm in arms.items()})

    async def load_state(self, key: str) -> dict[str, Any] | None:
        return self.states.get(key)

    async def save_state(self, key: str, payload: Mapping[str, Any]) -> bool:
        stored = self.states.get(key)
        if stored is not None and int(stored["revision"]) >= int(payload["revision"]):
            return False
        self.states[key] = dict(payload)
        return True

    async def add_decision(self, decision: Decision) -> None:
        self.decided.append(decision)

    def lease(self, name: str, ttl: float, owner: str) -> Lease:
        return LocalLease(owner)


@dataclass(frozen=True, slots=True)
class Rollout:
    """How one simulated rollout ended, and the candidate requests served until then."""

    status: SplitStatus
    candidate_requests: int
    ticks: int


async def run_rollout(
    config: CanaryConfig,
    rng: np.random.Generator,
    *,
    error_rate: Mapping[str, float],
    units_per_tick: int = 100,
    requests_per_unit: int = 2,
    max_ticks: int = 2000,
) -> Rollout:
    """Drive one rollout to its end (or `max_ticks`): traffic, then a controller tick, repeated."""
    store = SimStore()
    now = [0.0]
    split = CanarySplit("sim", config, clock=lambda: now[0])
    controller = CanaryController("sim", config, split, store, clock=lambda: now[0])  # type: ignore[arg-type]
    await controller.restore()
    served = 0
    for tick in range(1, max_ticks + 1):
        state = split.state
        if state.status in (SplitStatus.PROMOTED, SplitStatus.ROLLED_BACK):
            return Rollout(state.status, served, tick)
        candidate_units = int(rng.binomial(units_per_tick, state.percent / 100.0))
        for arm, count in ((CANDIDATE, candidate_units), (BASELINE, units_per_tick - candidate_units)):
            if count == 0:
                continue
            errors = rng.binomial(requests_per_unit, error_rate[arm], count).astype(np.float64)
            latency = rng.lognormal(-3.0, 0.3, (count, requests_per_unit)).sum(axis=1)
            store.arm(state.phase, arm).add(errors, latency, requests_per_unit)
        served += candidate_units * requests_per_unit
        now[0] += config.interval
        await controller.tick()
    return Rollout(split.state.status, served, max_ticks)

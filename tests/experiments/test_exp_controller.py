"""The canary controller: automatic rollback, promotion through every step, resumption after a
restart, and one leader among replicas sharing Redis. Time is compressed: intervals of tens of
milliseconds, or a clock the test moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from experiments.config import CanaryConfig
from experiments.controller import CanaryController
from experiments.splits import BASELINE, CANDIDATE, CanarySplit, SplitStatus
from experiments.store.base import EventStore
from experiments.store.redis import RedisEventStore
from experiments.store.sqlite import SqliteEventStore

Simulate = Callable[..., Awaitable[int]]
UNITS = [f"user-{i}" for i in range(1500)]


class FakeClock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def canary(**overrides: Any) -> CanaryConfig:
    raw: dict[str, Any] = {
        "kind": "canary",
        "unit": "header:x-user-id",
        "baseline": {"cluster": "risk-v1"},
        "candidate": {"cluster": "risk-v2"},
        "steps": [
            {"percent": 20, "min_duration": "1m", "min_units": 100},
            {"percent": 40, "min_duration": "1m", "min_units": 100},
            {"percent": 60, "min_duration": "1m", "min_units": 100},
            {"percent": 100},
        ],
        "guardrails": [
            {"metric": "error_rate", "max_increase": 0.02},
            {"metric": "latency_p99", "max_ratio": 1.5},
        ],
        "interval": "50ms",
    }
    raw.update(overrides)
    return CanaryConfig.model_validate(raw)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_a_candidate_with_ten_percent_errors_is_rolled_back(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    config = canary(steps=[{"percent": 50, "min_units": 100}, {"percent": 100}])
    split = CanarySplit("risk", config)
    controller = CanaryController("risk", config, split, sqlite_store)
    await simulate(
        sqlite_store, split, UNITS[:600], requests_per_unit=4,
        error_rate={BASELINE: 0.01, CANDIDATE: 0.10}, rng=np.random.default_rng(21),
    )  # fmt: skip
    await controller.start()
    try:
        await wait_for(lambda: split.state.status is SplitStatus.ROLLED_BACK)
    finally:
        await controller.stop()
    assert split.state.percent == 0.0
    assert {split.arm_of(u) for u in UNITS[:100]} == {BASELINE}
    decisions = await sqlite_store.decisions("risk")
    rollback = decisions[-1]
    assert rollback.action == "rollback" and rollback.phase == 0
    evidence = next(g for g in rollback.evidence["guardrails"] if g["metric"] == "error_rate")
    assert evidence["status"] == "regressed" and evidence["p_value"] <= 0.05
    assert evidence["confidence_bound"] > 0.02  # the lower bound of the increase is past its limit
    assert evidence["candidate"] > 0.05 and evidence["baseline"] < 0.03
    assert rollback.evidence["units"][CANDIDATE] > 200
    stored = await sqlite_store.load_state("risk")
    assert stored is not None and stored["status"] == "rolled_back"


async def test_a_healthy_candidate_is_promoted_through_every_step(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    clock = FakeClock()
    config = canary()
    split = CanarySplit("risk", config, clock=clock)
    controller = CanaryController("risk", config, split, sqlite_store, clock=clock)
    await controller.restore()
    rng = np.random.default_rng(22)
    percents = []
    for _ in range(10):
        if split.state.status is SplitStatus.PROMOTED:
            break
        percents.append(split.state.percent)
        await simulate(sqlite_store, split, UNITS, error_rate={BASELINE: 0.01, CANDIDATE: 0.01}, rng=rng)
        held = await controller.tick()
        assert held is not None and held.action == "hold"
        assert any("of 60s" in reason for reason in held.reasons)  # min_duration not met yet
        clock.now += 61
        moved = await controller.tick()
        assert moved is not None
        assert moved.action in ("advance", "promote"), moved.reasons
    assert percents == [20, 40, 60]
    assert split.state.status is SplitStatus.PROMOTED and split.state.percent == 100
    actions = [d.action for d in await sqlite_store.decisions("risk")]
    assert actions == ["hold", "advance", "hold", "advance", "hold", "promote"]
    assert await controller.tick() is None  # finished: nothing left to decide


async def test_the_controller_resumes_after_a_restart(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    clock = FakeClock()
    config = canary()
    first = CanarySplit("risk", config, clock=clock)
    controller = CanaryController("risk", config, first, sqlite_store, clock=clock)
    await controller.restore()
    await simulate(sqlite_store, first, UNITS, rng=np.random.default_rng(23))
    clock.now += 61
    assert (await controller.tick()).action == "advance"  # type: ignore[union-attr]
    started_second_step = first.state.step_started_at

    # The process restarts: its lease goes with it; a new split (at step 0 by config) and a new
    # controller, same store.
    await controller.stop()
    restarted = CanarySplit("risk", config, clock=clock)
    assert restarted.state.step == 0
    again = CanaryController("risk", config, restarted, sqlite_store, clock=clock)
    await again.restore()
    assert restarted.state.step == 1 and restarted.state.percent == 40
    assert restarted.state.step_started_at == started_second_step  # min_duration counts from before
    clock.now += 30
    await simulate(sqlite_store, restarted, UNITS, rng=np.random.default_rng(24))
    assert (await again.tick()).action == "hold"  # type: ignore[union-attr]
    clock.now += 31
    assert (await again.tick()).action == "advance"  # type: ignore[union-attr]
    assert restarted.state.percent == 60


async def test_one_leader_among_replicas_sharing_redis(redis_url: str, simulate: Simulate) -> None:
    prefix = f"lease{time.monotonic_ns()}:"
    config = canary(
        steps=[{"percent": 30, "min_units": 100}, {"percent": 60, "min_units": 100}, {"percent": 100}]
    )
    async with (
        RedisEventStore(redis_url, prefix=prefix) as store_a,
        RedisEventStore(redis_url, prefix=prefix) as store_b,
    ):
        split_a, split_b = CanarySplit("risk", config), CanarySplit("risk", config)
        replica_a = CanaryController("risk", config, split_a, store_a, owner="replica-a")
        replica_b = CanaryController("risk", config, split_b, store_b, owner="replica-b")
        await replica_a.restore()
        await replica_b.restore()
        for _ in range(5):
            decisions = await asyncio.gather(replica_a.tick(), replica_b.tick())
            assert sum(d is not None for d in decisions) == 1
            assert replica_a.is_leader != replica_b.is_leader
        leader, follower = (replica_a, replica_b) if replica_a.is_leader else (replica_b, replica_a)
        leader_split, follower_split = (split_a, split_b) if leader is replica_a else (split_b, split_a)

        await simulate(store_a, leader_split, UNITS, rng=np.random.default_rng(25))
        decision = await leader.tick()
        assert decision is not None and decision.action == "advance"
        assert await follower.tick() is None
        assert follower_split.state.percent == 60 == leader_split.state.percent  # published and adopted
        assert follower_split.state.phase == leader_split.state.phase

        await leader.stop()  # releases the lease: the other replica takes over at its next tick
        assert await follower.tick() is not None and follower.is_leader
        await follower.stop()


async def test_no_data_means_hold_not_advance(sqlite_store: EventStore) -> None:
    config = canary(steps=[{"percent": 10}, {"percent": 50}])
    split = CanarySplit("risk", config)
    controller = CanaryController("risk", config, split, sqlite_store)
    await controller.restore()
    decision = await controller.tick()
    assert decision is not None and decision.action == "hold"
    assert all("not enough data" in reason for reason in decision.reasons)
    assert split.state.percent == 10

"""Experiment status from stored statistics: comparisons, health, decision, JSON."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
import orjson
import pytest

from experiments.analysis import AnalysisSettings, analyze, status_of
from experiments.config import AbConfig
from experiments.events import Exposure, Feedback
from experiments.splits import AbSplit
from experiments.status import ExperimentStatus
from experiments.store.base import EventStore
from experiments.store.sqlite import SqliteEventStore

Simulate = Callable[..., Awaitable[int]]
METRICS = ["latency", "error_rate", "latency_p99", "feedback:conversion"]


def config(**overrides: object) -> AbConfig:
    raw: dict[str, object] = {
        "kind": "ab",
        "unit": "header:x-user-id",
        "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
        "metrics": METRICS,
        "expected_units": 4000,
    }
    raw.update(overrides)
    return AbConfig.model_validate(raw)


async def add_conversions(
    store: EventStore, split: AbSplit, units: list[str], rates: dict[str, float], rng: np.random.Generator
) -> None:
    """Feedback by unit id: each unit converts with its arm's rate."""
    feedback = []
    for unit in units:
        arm = split.arm_of(unit)
        if rng.random() < rates[arm]:
            feedback.append(Feedback("conversion", 1.0, 2000.0, unit_id=unit))
    await store.write(feedback)


@pytest.fixture
def units() -> list[str]:
    return [f"user-{i}" for i in range(3000)]


async def run(
    store: EventStore,
    simulate: Simulate,
    units: list[str],
    *,
    errors: dict[str, float],
    conversions: dict[str, float],
    seed: int,
) -> tuple[AbSplit, ExperimentStatus]:
    rng = np.random.default_rng(seed)
    split = AbSplit("exp", config())
    await simulate(store, split, units, error_rate=errors, rng=rng)
    await add_conversions(store, split, units, conversions, rng)
    status = await status_of("exp", config(), split, store, now=5000.0)
    return split, status


async def test_equal_arms_show_nothing_and_keep_running(
    sqlite_store: SqliteEventStore, simulate: Simulate, units: list[str]
) -> None:
    _, status = await run(
        sqlite_store, simulate, units, errors={"control": 0.02, "treatment": 0.02},
        conversions={"control": 0.1, "treatment": 0.1}, seed=11,
    )  # fmt: skip
    assert status.health.ok and status.health.srm is not None and not status.health.srm.mismatch
    assert status.decision.action == "keep_running"
    assert status.decision.more_units is not None and status.decision.more_units > 0
    assert not any(c.significant for c in status.comparisons)
    for comparison in status.comparisons:
        assert comparison.enough_data
        # The always-valid sequence is wider than the fixed-horizon interval, and both cover zero.
        assert comparison.cs_low <= comparison.ci_low and comparison.cs_high >= comparison.ci_high
        assert comparison.cs_low <= 0.0 <= comparison.cs_high
    arms = {arm.arm: arm for arm in status.arms}
    assert abs(arms["control"].units - arms["treatment"].units) < 200
    assert arms["control"].metrics["latency_p99"] > arms["control"].latency_quantiles["p50"]


async def test_a_better_goal_ships_the_treatment(
    sqlite_store: SqliteEventStore, simulate: Simulate, units: list[str]
) -> None:
    _, status = await run(
        sqlite_store, simulate, units, errors={"control": 0.02, "treatment": 0.02},
        conversions={"control": 0.10, "treatment": 0.18}, seed=12,
    )  # fmt: skip
    goal = status.comparison("feedback:conversion")
    assert goal is not None and goal.significant and goal.direction == "better"
    assert goal.relative == pytest.approx(0.8, abs=0.35)
    assert goal.p_value_adjusted <= status.alpha
    assert status.decision.action == "ship" and status.decision.winner == "treatment"


async def test_a_guardrail_regression_rolls_back(
    sqlite_store: SqliteEventStore, simulate: Simulate, units: list[str]
) -> None:
    _, status = await run(
        sqlite_store, simulate, units, errors={"control": 0.01, "treatment": 0.10},
        conversions={"control": 0.10, "treatment": 0.18}, seed=13,
    )  # fmt: skip
    errors = status.comparison("error_rate")
    assert errors is not None and errors.direction == "worse" and errors.cs_low > 0.0
    assert status.decision.action == "roll_back"
    assert any("error_rate" in reason for reason in status.decision.reasons)


async def test_sample_ratio_mismatch_makes_it_unhealthy(
    sqlite_store: SqliteEventStore, units: list[str]
) -> None:
    split = AbSplit("exp", config())
    events = []
    for unit in units:
        arm = split.arm_of(unit)
        if arm == "treatment" and int(unit.split("-")[1]) % 4 == 0:
            continue  # a quarter of the treatment's units never reach the log
        events.append(Exposure("exp", arm, unit, uuid.uuid4().hex, 1.0))
    await sqlite_store.write(events)
    status = await status_of("exp", config(), split, sqlite_store, now=1.0)
    assert status.health.srm is not None and status.health.srm.mismatch
    assert status.health.srm.p_value < 0.001 and status.health.srm.p_value_sequential < 0.001
    assert status.decision.action == "unhealthy" and not status.health.ok


async def test_too_few_units_keep_running_with_the_shortfall(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    split = AbSplit("exp", config())
    await simulate(sqlite_store, split, [f"u{i}" for i in range(60)], rng=np.random.default_rng(1))
    status = await status_of("exp", config(), split, sqlite_store, now=1.0)
    assert status.decision.action == "keep_running"
    fewest = min(arm.units for arm in status.arms)
    assert status.decision.more_units == (100 - fewest) * 2
    assert not any(c.enough_data for c in status.comparisons)


async def test_status_serialises_to_json(sqlite_store: SqliteEventStore, simulate: Simulate) -> None:
    split = AbSplit("exp", config())
    await simulate(sqlite_store, split, [f"u{i}" for i in range(30)], rng=np.random.default_rng(2))
    status = await status_of("exp", config(), split, sqlite_store, now=1.0)
    document = orjson.loads(status.to_json())
    assert document["experiment"] == "exp" and document["decision"]["action"] == "keep_running"
    assert {arm["arm"] for arm in document["arms"]} == {"control", "treatment"}
    p99 = next(c for c in document["comparisons"] if c["metric"] == "latency_p99")
    assert p99["ci_low"] is None  # too few requests for a p99 interval: null, not NaN


def test_an_empty_phase_is_analysed_without_errors() -> None:
    from experiments.store.base import PhaseData

    status = analyze(
        "exp", "ab", PhaseData("exp", 0, {}), shares={"control": 0.5, "treatment": 0.5}, metrics=METRICS,
        settings=AnalysisSettings(), generated_at=0.0,
    )  # fmt: skip
    assert status.decision.action == "keep_running" and status.health.ok
    assert all(math.isnan(c.difference) for c in status.comparisons)

"""What an analyst sees across refreshes of a live experiment: always-valid results that do not flip,
planning by the pre-registered mde, the Bayesian reading, and a verdict in layers."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import numpy as np
import orjson

from experiments.analysis import status_of
from experiments.config import AbConfig
from experiments.events import Feedback
from experiments.splits import AbSplit
from experiments.status import ExperimentStatus
from experiments.store.sqlite import SqliteEventStore

Simulate = Callable[..., Awaitable[int]]
# A true effect on errors (2 % against 4 %) that the sequential test finds within a few thousand units.
ERRORS = {"control": 0.02, "treatment": 0.04}
# The goal: the same conversion rate in both arms.
CONVERSION = 0.2


def config(**overrides: object) -> AbConfig:
    raw: dict[str, object] = {
        "kind": "ab",
        "unit": "header:x-user-id",
        "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
        "metrics": ["latency", "error_rate", "latency_p50"],
        "expected_units": 4000,
    }
    raw.update(overrides)
    return AbConfig.model_validate(raw)


async def refreshes(
    store: SqliteEventStore, simulate: Simulate, experiment: AbConfig, batches: int
) -> list[ExperimentStatus]:
    """Traffic in batches of 500 units, a refresh after each."""
    rng = np.random.default_rng(4)
    split = AbSplit("exp", experiment)
    seen = []
    for batch in range(batches):
        units = [f"user-{batch}-{i}" for i in range(500)]
        await simulate(store, split, units, error_rate=ERRORS, rng=rng, now=1000.0 + batch)
        converted = [unit for unit in units if rng.random() < CONVERSION]
        await store.write([Feedback("conversion", 1.0, 1000.5 + batch, unit_id=unit) for unit in converted])
        seen.append(await status_of("exp", experiment, split, store, now=2000.0 + batch))
    return seen


async def test_always_valid_results_never_flip_between_refreshes(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    statuses = await refreshes(sqlite_store, simulate, config(), batches=6)
    for metric in ("error_rate", "latency"):
        items = [status.comparison(metric) for status in statuses]
        assert all(item is not None for item in items)
        p = [item.p_value_sequential for item in items if item is not None]
        low = [item.cs_low for item in items if item is not None]
        high = [item.cs_high for item in items if item is not None]
        assert p == sorted(p, reverse=True)  # the running minimum
        assert low == sorted(low) and high == sorted(high, reverse=True)  # nested intervals
    error = statuses[-1].comparison("error_rate")
    assert error is not None and error.significant and error.direction == "worse"
    # Relative interval on the log scale: asymmetric around the estimate, never below -100 %.
    assert -1.0 < error.relative_ci_low < error.relative < error.relative_ci_high
    centre = math.log1p(error.relative)
    assert math.log1p(error.relative_ci_high) - centre > 0.0


async def test_the_verdict_says_which_layer_decided(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    statuses = await refreshes(sqlite_store, simulate, config(), batches=6)
    verdict = statuses[-1].decision
    assert verdict.action == "roll_back"
    assert verdict.reasons[0] == "goal: none configured, only guardrails are watched"
    assert len(verdict.reasons) == 2
    assert "guardrail: treatment is worse on error_rate, which blocks shipping" in verdict.reasons


async def test_planning_follows_the_pre_registered_mde_and_bayes_is_reported(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    experiment = config(mde=0.05, analysis="bayesian", metrics=["error_rate", "feedback:conversion"])
    first, second = await refreshes(sqlite_store, simulate, experiment, batches=2)
    for status in (first, second):
        assert status.decision.planned_units is not None and status.decision.progress is not None
    assert first.decision.progress is not None and second.decision.progress is not None
    assert 0.0 < first.decision.progress < second.decision.progress
    error = second.comparison("error_rate")
    assert error is not None and error.bayes is not None
    # Errors: lower is better, and the treatment has more, so its chance to beat control is small.
    assert error.bayes.chance_to_beat_control < 0.5 and error.bayes.expected_loss > 0.0
    document = orjson.loads(second.to_json())
    reported = next(c for c in document["comparisons"] if c["metric"] == "error_rate")
    assert set(reported["bayes"]) >= {"chance_to_beat_control", "expected_loss"}


async def test_a_fixed_horizon_experiment_waits_for_its_planned_size(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    experiment = config(
        decision="fixed_horizon", expected_units=2000, metrics=["error_rate", "feedback:conversion"]
    )
    early, _, _, _, late = await refreshes(sqlite_store, simulate, experiment, batches=5)
    for status, read in ((early, False), (late, True)):
        goal = status.comparison("feedback:conversion")
        # One goal: its adjusted p is its fixed-horizon p, and it may decide only at the horizon.
        assert goal is not None and goal.p_value_adjusted == goal.p_value and goal.enough_data is read
    assert early.decision.action == "keep_running"
    assert early.decision.reasons[0] == "goal: fixed horizon, read at 2,000 units (500 so far)"
    assert early.decision.more_units == 1500
    # Guardrails stay sequential: the error regression is not held back by the horizon.
    error = late.comparison("error_rate")
    assert error is not None and error.significant and late.decision.action == "roll_back"


async def test_a_winsorised_metric_is_compared_capped(
    sqlite_store: SqliteEventStore, simulate: Simulate
) -> None:
    (status,) = await refreshes(sqlite_store, simulate, config(winsorize={"latency": 99}), batches=1)
    latency, errors = status.comparison("latency"), status.comparison("error_rate")
    assert latency is not None and errors is not None
    assert 0.0 < latency.winsorized_at < 1.0 and math.isnan(errors.winsorized_at)
    assert latency.ci_low < latency.difference < latency.ci_high

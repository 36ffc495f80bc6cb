"""Feedback before it is recorded: the document's checks, the metric's bounds, and the intake that
joins a value to the exposure it names (a real SQLite store and recorder; nothing is mocked)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from experiments.config import AbConfig
from experiments.events import Exposure, Feedback
from experiments.feedback import OutOfBounds, parse_feedback
from experiments.recorder import EventRecorder
from experiments.store.base import EventStore
from experiments.store.sqlite import SqliteEventStore
from gateway.core.errors import BadRequest, NotFound, ServiceUnavailable
from gateway.experiments_feedback import FeedbackIntake, exposure_id_for, hold_window
from tests.experiments.conftest import make_context

# A short write interval keeps the hold of an unknown id (two intervals and 250 ms) well under a second.
FLUSH_S = 0.01


def ab(**overrides: Any) -> AbConfig:
    raw: dict[str, Any] = {
        "kind": "ab",
        "unit": "header:x-user-id",
        "arms": {"control": {"cluster": "a"}, "treatment": {"cluster": "b"}},
        "metrics": ["feedback:revenue"],
        **overrides,
    }
    return AbConfig.model_validate(raw)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "body must be a JSON object"),
        ({"value": 1, "exposure_id": "e"}, "metric:"),
        ({"metric": "a b", "value": 1, "exposure_id": "e"}, "metric:"),
        ({"metric": "m" * 101, "value": 1, "exposure_id": "e"}, "metric:"),
        ({"metric": "m", "value": True, "exposure_id": "e"}, "value:"),
        ({"metric": "m", "value": "1", "exposure_id": "e"}, "value:"),
        ({"metric": "m", "value": float("inf"), "exposure_id": "e"}, "value: must be a finite number"),
        ({"metric": "m", "value": float("nan"), "exposure_id": "e"}, "value: must be a finite number"),
        ({"metric": "m", "value": 10**400, "exposure_id": "e"}, "value: must be a finite number"),
        ({"metric": "m", "value": 1}, "exposure_id, request_id or unit_id"),
        ({"metric": "m", "value": 1, "exposure_id": "x" * 201}, "exposure_id:"),
        ({"metric": "m", "value": 1, "request_id": "a\nb"}, "request_id:"),
        ({"metric": "m", "value": 1, "unit_id": 7}, "unit_id:"),
        ({"metric": "m", "value": 1, "unit_id": "u", "experiment": ""}, "experiment:"),
    ],
)
def test_a_malformed_document_is_refused_naming_its_field(payload: Any, field: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_feedback(payload)
    assert raised.value.status == 400 and field in raised.value.message


def test_request_id_is_the_older_name_of_the_exposure_id() -> None:
    alias = parse_feedback({"metric": "m", "value": 2, "request_id": "r1"})
    assert alias.exposure_id == "r1" and alias.request_id == "r1"
    both = parse_feedback({"metric": "m", "value": 2, "request_id": "r1", "exposure_id": "e1"})
    assert both.exposure_id == "e1"


def test_bounds_are_finite_ordered_and_default_to_a_safe_range() -> None:
    config = ab(feedback_bounds={"revenue": {"min": 0, "max": 1000}})
    assert config.bounds_of("revenue").admits(999.5) and not config.bounds_of("revenue").admits(-0.5)
    default = config.bounds_of("clicks")
    assert default.admits(1e15) and not default.admits(1e308) and not default.admits(-1e16)
    for bad in ({"min": 5, "max": 1}, {"max": 1e308}, {"min": float("-inf")}, {"max": float("nan")}):
        with pytest.raises(ValidationError):
            ab(feedback_bounds={"revenue": bad})
    with pytest.raises(ValidationError, match="feedback metric"):
        ab(feedback_bounds={"bad name": {"max": 1}})


def test_the_exposure_id_is_the_gateways_never_the_clients() -> None:
    generated = make_context(request_id="gw-made")  # the client sent no x-request-id
    assert exposure_id_for(generated) == "gw-made"
    chosen = make_context({"x-request-id": "shared"}, request_id="shared")
    first, second = exposure_id_for(chosen), exposure_id_for(chosen)
    assert first != "shared" and second != "shared" and first != second


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SqliteEventStore, EventRecorder]]:
    async with SqliteEventStore(tmp_path / "events.db") as store:
        # Not started: what it records stays queued until the test flushes it.
        yield store, EventRecorder(store, flush_interval=FLUSH_S)


def intake(store: SqliteEventStore, recorder: EventRecorder, **config: Any) -> FeedbackIntake:
    return FeedbackIntake(store, recorder, {"exp": ab(**config)}, FLUSH_S)


def exposure(arm: str, unit: str, exposure_id: str, request_id: str = "r") -> Exposure:
    return Exposure("exp", arm, unit, request_id, 1.0, exposure_id=exposure_id)


async def test_an_unknown_exposure_is_held_briefly_then_answered_404_and_counted(
    parts: tuple[SqliteEventStore, EventRecorder],
) -> None:
    store, recorder = parts
    feed = intake(store, recorder)
    started = time.monotonic()
    with pytest.raises(NotFound, match="no exposure has id 'nobody'"):
        await feed.accept({"exposure_id": "nobody", "metric": "revenue", "value": 1})
    assert time.monotonic() - started >= hold_window(FLUSH_S) * 0.9
    with pytest.raises(NotFound, match="unit 'ghost' has no exposure"):
        await feed.accept({"unit_id": "ghost", "metric": "revenue", "value": 1})
    assert feed.counts["unknown"] == 2 and feed.counts["accepted"] == 0
    assert not list(recorder.queued())  # nothing was recorded for them


async def test_an_exposure_still_queued_or_already_stored_is_found(
    parts: tuple[SqliteEventStore, EventRecorder],
) -> None:
    store, recorder = parts
    feed = intake(store, recorder)
    recorder.record(exposure("treatment", "u1", "e-queued"))
    receipt = await feed.accept({"exposure_id": "e-queued", "metric": "revenue", "value": 3})
    assert receipt == {"accepted": True, "exposure_id": "e-queued", "experiments": ["exp"]}
    await recorder.flush()
    receipt = await feed.accept({"exposure_id": "e-queued", "metric": "revenue", "value": 4})
    assert receipt["experiments"] == ["exp"]
    await recorder.flush()
    revenue = (await store.phase_data("exp", 0)).arm("treatment").moments["feedback:revenue"]
    assert revenue.count == 2 and revenue.mean == pytest.approx(3.5)
    with pytest.raises(NotFound, match="in experiment 'other'"):
        await feed.accept({"exposure_id": "e-queued", "metric": "revenue", "value": 1, "experiment": "other"})


async def test_one_client_request_id_shared_by_many_exposures_credits_exactly_one(
    parts: tuple[SqliteEventStore, EventRecorder],
) -> None:
    store, recorder = parts
    feed = intake(store, recorder)
    for index in range(6):  # six users sent the same x-request-id; each exposure has its own id
        arm = "control" if index % 2 else "treatment"
        recorder.record(exposure(arm, f"user-{index}", f"e{index}", request_id="shared"))
    await recorder.flush()
    with pytest.raises(NotFound, match="not an exposure id"):
        await feed.accept({"request_id": "shared", "metric": "revenue", "value": 1})
    await feed.accept({"exposure_id": "e3", "metric": "revenue", "value": 1})
    await recorder.flush()
    data = await store.phase_data("exp", 0)
    credited = {arm: data.arm(arm).moments.get("feedback:revenue") for arm in ("control", "treatment")}
    assert credited["treatment"] is None
    assert credited["control"] is not None and credited["control"].count == 1


async def test_values_outside_the_declared_bounds_are_refused(
    parts: tuple[SqliteEventStore, EventRecorder],
) -> None:
    store, recorder = parts
    feed = intake(store, recorder, feedback_bounds={"revenue": {"min": 0, "max": 100}})
    recorder.record(exposure("control", "u1", "e1"))
    with pytest.raises(OutOfBounds, match=r"value: 101 is outside .*'revenue'.*\[0, 100\]"):
        await feed.accept({"exposure_id": "e1", "metric": "revenue", "value": 101})
    with pytest.raises(OutOfBounds, match="outside the bounds of metric 'clicks'"):
        await feed.accept({"exposure_id": "e1", "metric": "clicks", "value": 1e308})  # default bounds
    await feed.accept({"exposure_id": "e1", "metric": "revenue", "value": 100})
    # An experiment without metrics of its own (blue-green, shadow, or one since retired) still
    # refuses what no metric may hold.
    recorder.record(Exposure("retired", "blue", "u1", "r", 1.0, exposure_id="e2"))
    with pytest.raises(OutOfBounds, match="experiment 'retired'"):
        await feed.accept({"exposure_id": "e2", "metric": "revenue", "value": -1e308})
    assert feed.counts["out_of_bounds"] == 3 and feed.counts["accepted"] == 1


async def test_a_full_event_queue_answers_503(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "events.db") as store:
        recorder = EventRecorder(store, capacity=1, flush_interval=FLUSH_S)
        recorder.record(exposure("control", "u1", "e1"))
        feed = intake(store, recorder)
        with pytest.raises(ServiceUnavailable, match="queue is full"):
            await feed.accept({"exposure_id": "e1", "metric": "revenue", "value": 1})
        assert feed.counts["unavailable"] == 1


async def test_a_store_that_cannot_be_read_answers_503_without_its_details(tmp_path: Path) -> None:
    closed = SqliteEventStore(tmp_path / "events.db")  # never started: every read fails
    feed = intake(closed, EventRecorder(closed, flush_interval=FLUSH_S))
    with pytest.raises(ServiceUnavailable) as raised:
        await feed.accept({"exposure_id": "e1", "metric": "revenue", "value": 1})
    assert raised.value.message == "the experiment store cannot be read; retry shortly"
    assert feed.counts["unavailable"] == 1


async def test_both_stores_find_an_exposure_by_its_id_or_its_unit(store: EventStore) -> None:
    await store.write(
        [
            Exposure("exp", "treatment", "u1", "shared", 1.0, exposure_id="e1"),
            Exposure("exp", "control", "u2", "shared", 1.0, exposure_id="e2"),
            Exposure("other", "blue", "u1", "r3", 1.0),  # no exposure id: its request id stands in
        ]
    )

    async def arms(**names: str) -> set[tuple[str, str]]:
        found = await store.feedback_targets(Feedback("m", 1.0, 2.0, **names))
        return {(target.experiment, target.arm) for target in found}

    assert await arms(exposure_id="e1") == {("exp", "treatment")}
    assert await arms(request_id="e2") == {("exp", "control")}
    assert await arms(request_id="shared") == set()  # a client's id names no exposure
    assert await arms(request_id="r3") == {("other", "blue")}
    assert await arms(unit_id="u1") == {("exp", "treatment"), ("other", "blue")}
    assert await arms(unit_id="u1", experiment="other") == {("other", "blue")}
    assert await arms(exposure_id="nobody") == set()

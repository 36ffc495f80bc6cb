"""Segment breakdowns: the config, what exposures record (journal, both stores, the data path), and
each goal's effect per segment in the status and the report."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from experiments.analysis import status_of
from experiments.config import AbConfig
from experiments.events import Exposure, Feedback, Outcome
from experiments.journal import decode, encode
from experiments.report import build_report, render
from experiments.segments import MAX_SEGMENT_VALUE, segment_values
from experiments.splits import AbSplit
from experiments.store.base import EventStore
from experiments.store.sqlite import SqliteEventStore
from gateway.core.context import Principal
from tests.experiments.conftest import make_context


def config(**overrides: object) -> AbConfig:
    raw: dict[str, object] = {
        "kind": "ab",
        "unit": "header:x-user-id",
        "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
        "metrics": ["error_rate", "feedback:conversion"],
        "segments": ["header:X-Region", "tenant"],
        "expected_units": 8000,
    }
    raw.update(overrides)
    return AbConfig.model_validate(raw)


def test_segment_dimensions_are_checked_and_headers_lower_cased() -> None:
    assert config().segments == ["header:x-region", "tenant"]
    for bad in (["region"], ["header:"], ["tenant", "tenant"], ["header:a b"]):
        with pytest.raises(ValidationError):
            config(segments=bad)


def test_a_request_gives_one_value_per_dimension() -> None:
    ctx = make_context({"x-region": "eu-west" + "x" * 100}, principal=Principal("p", tenant="acme"))
    ctx.model_version = "3"
    found = dict(segment_values(["header:x-region", "tenant", "model_version", "header:x-missing"], ctx))
    assert found["tenant"] == "acme" and found["model_version"] == "3" and found["header:x-missing"] == ""
    assert (
        found["header:x-region"].startswith("eu-west") and len(found["header:x-region"]) == MAX_SEGMENT_VALUE
    )


def test_the_journal_keeps_segments_and_still_replays_lines_written_before_them() -> None:
    exposure = Exposure("e", "a", "u1", "r1", 1.0, segments=(("tenant", "acme"),))
    _, (decoded,) = decode(encode("b1", [exposure]))
    assert decoded == exposure
    old_line = b'{"id":"b0","e":[["e","a","u1","r1",1.0,0,false,false,"x1"]],"o":[],"f":[]}\n'
    _, (old,) = decode(old_line)
    assert isinstance(old, Exposure) and old.segments == () and old.exposure_id == "x1"


async def test_both_stores_keep_an_exposure_s_segments(store: EventStore) -> None:
    await store.write(
        [
            Exposure("e", "a", "u1", "r1", 1.0, segments=(("header:x-region", "eu"), ("tenant", ""))),
            Exposure("e", "a", "u2", "r2", 1.0),
        ]
    )
    rows = await store.export_rows("e", "exposures")
    assert orjson.loads(rows[0]["segments"]) == {"header:x-region": "eu", "tenant": ""}
    assert not rows[1]["segments"]


async def test_a_sqlite_file_from_before_segments_gains_the_column(tmp_path: object) -> None:
    import sqlite3
    from pathlib import Path

    path = Path(str(tmp_path)) / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE exposures (id INTEGER PRIMARY KEY, experiment TEXT, phase INTEGER, arm TEXT, "
            "unit_id TEXT, request_id TEXT, time REAL, forced INTEGER, excluded INTEGER, exposure_id TEXT)"
        )
        db.execute("INSERT INTO exposures VALUES (1, 'e', 0, 'a', 'u1', 'r1', 1.0, 0, 0, 'r1')")
    async with SqliteEventStore(path) as store:
        await store.write([Exposure("e", "a", "u2", "r2", 2.0, segments=(("tenant", "acme"),))])
        rows = await store.export_rows("e", "exposures")
    assert [row["unit_id"] for row in rows] == ["u1", "u2"]
    assert not rows[0]["segments"] and orjson.loads(rows[1]["segments"]) == {"tenant": "acme"}


async def _traffic(store: EventStore, split: AbSplit, rng: np.random.Generator) -> None:
    """6,000 units in three regions and two tenants; the treatment converts better in "eu" only."""
    events: list[Exposure | Outcome | Feedback] = []
    for i in range(6000):
        unit = f"user-{i}"
        arm = split.arm_of(unit)
        region = ("eu", "us", "apac")[i % 3]
        tenant = "tiny" if i % 100 == 0 else "main"  # 60 units: below the small-segment rule
        segments = (("header:x-region", region), ("tenant", tenant))
        events.append(Exposure("exp", arm, unit, f"r{i}", 1000.0 + i, segments=segments))
        events.append(Outcome(f"r{i}", "exp", arm, unit, 1000.0 + i, 0.01, 200, False))
        rate = 0.30 if arm == "treatment" and region == "eu" else 0.15
        if rng.random() < rate:
            events.append(Feedback("conversion", 1.0, 1001.0 + i, unit_id=unit))
    await store.write(events)


async def test_each_goal_is_broken_down_by_segment_with_holm_and_the_small_segment_rule(
    sqlite_store: SqliteEventStore,
) -> None:
    split = AbSplit("exp", config())
    await _traffic(sqlite_store, split, np.random.default_rng(3))
    status = await status_of("exp", config(), split, sqlite_store, now=9000.0)
    goal = status.comparison("feedback:conversion")
    assert goal is not None and status.comparison("error_rate").segments == ()  # type: ignore[union-attr]
    cells = {(s.dimension, s.segment): s for s in goal.segments}
    assert set(cells) == {
        ("header:x-region", "eu"), ("header:x-region", "us"), ("header:x-region", "apac"),
        ("tenant", "main"), ("tenant", "tiny"),
    }  # fmt: skip
    eu, us, tiny = cells["header:x-region", "eu"], cells["header:x-region", "us"], cells["tenant", "tiny"]
    assert eu.significant and eu.difference == pytest.approx(0.15, abs=0.05)
    assert not us.significant and us.ci_low < 0.0 < us.ci_high
    assert not tiny.tested and math.isnan(tiny.p_value) and tiny.control_units + tiny.treatment_units == 60
    tested = [s for s in goal.segments if s.tested]
    assert all(s.p_value_adjusted >= s.p_value for s in tested)  # Holm never lowers a p-value
    (region,) = [h for h in goal.heterogeneity if h.dimension == "header:x-region"]
    assert region.degrees_of_freedom == 2 and region.p_value < 0.01
    document = orjson.loads(status.to_json())
    goal_json = next(c for c in document["comparisons"] if c["metric"] == "feedback:conversion")
    assert {"segments", "heterogeneity"} <= set(goal_json)


async def test_the_report_shows_the_segments_in_every_format(sqlite_store: SqliteEventStore) -> None:
    split = AbSplit("exp", config())
    await _traffic(sqlite_store, split, np.random.default_rng(4))
    report = await build_report("exp", config(), split, sqlite_store, now=9000.0)
    markdown, html = render(report, "md"), render(report, "html")
    for text in (markdown, html):
        assert "Effect by segment" in text and "x-region" in text and "apac" in text
    document = orjson.loads(render(report, "json"))
    assert {"experiment", "verdict", "goals", "guardrails"} <= set(document)
    assert document["goals"][0]["segments"]


async def test_the_data_path_records_each_configured_dimension_on_the_exposure(tmp_path: object) -> None:
    from pathlib import Path

    from experiments.splits.base import Assignment
    from gateway.config import GatewayConfig
    from gateway.experiments_runtime import ExperimentsService

    raw = {
        "clusters": {
            "v1": {"endpoints": ["127.0.0.1:1"]},
            "v2": {"endpoints": ["127.0.0.1:2"]},
        },
        "routes": [{"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}],
        "experiments": {"exp": config().model_dump(mode="json")},
        "state": {"sqlite_path": str(Path(str(tmp_path)) / "events.db")},
    }
    gateway_config = GatewayConfig.model_validate(raw)
    service = ExperimentsService(gateway_config.state, dict)
    await service.start()
    try:
        await service.apply(gateway_config)
        ctx = make_context({"x-region": "eu"}, principal=Principal("p", tenant="acme"), request_id="r1")
        service.expose(Assignment("exp", "control", "v1", "u1", 0), ctx)
        await service.recorder.flush()
        rows = await service.store.export_rows("exp", "exposures")
    finally:
        await service.stop()
    assert orjson.loads(rows[0]["segments"]) == {"header:x-region": "eu", "tenant": "acme"}

"""Analysis survives whatever a store already holds: sums an older version let overflow (1e308 twice
is infinity), NaN (SQLite keeps it as NULL), raw feedback rows with such values, and a file from
before exposure ids. The status, every report format and later writes still work, and the analysis
names what it left out. Pytest turns numpy's overflow warnings into errors, so none may occur."""

from __future__ import annotations

import math
import sqlite3
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest

from experiments.analysis import status_of
from experiments.config import AbConfig
from experiments.events import Exposure, Feedback
from experiments.report import build_report, render
from experiments.splits import AbSplit
from experiments.store.redis import RedisEventStore
from experiments.store.sqlite import SqliteEventStore
from experiments.store.sqlite_schema import SCHEMA
from tests.experiments.conftest import Simulate

METRICS = ["latency", "error_rate", "feedback:revenue", "feedback:clicks"]


def config() -> AbConfig:
    return AbConfig.model_validate(
        {
            "kind": "ab",
            "unit": "header:x-user-id",
            "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
            "metrics": METRICS,
        }
    )


async def _traffic(store: SqliteEventStore | RedisEventStore, simulate: Simulate) -> AbSplit:
    """Ordinary traffic and clicks for every unit, so the healthy metrics have values."""
    split = AbSplit("exp", config())
    units = [f"u{i}" for i in range(300)]
    await simulate(store, split, units, rng=np.random.default_rng(5))
    await store.write([Feedback("clicks", 1.0, 1100.0, unit_id=unit) for unit in units])
    return split


def _poison_sqlite(path: Path, unit: str) -> None:
    """What an older version could leave: overflowed sums, NaN stored as NULL, raw rows of 1e308."""
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO moments VALUES ('exp', 0, 'control', 'feedback:revenue', 2, ?, ?)",
            (math.inf, math.inf),
        )
        db.execute("INSERT INTO moments VALUES ('exp', 0, 'treatment', 'feedback:revenue', 1, NULL, NULL)")
        for arm, key, value in (
            ("control", "s:feedback:revenue", math.inf),
            ("control", "ss:feedback:revenue", math.inf),
            ("treatment", "s:feedback:revenue", None),
            ("treatment", "ss:feedback:revenue", None),
        ):
            db.execute("INSERT INTO unit_sums VALUES ('exp', 0, ?, ?, ?)", (arm, key, value))
        db.execute(
            "INSERT INTO unit_totals VALUES ('exp', 0, 'control', ?, 'feedback:revenue', ?)", (unit, math.inf)
        )
        for value in (1e308, 1e308, None, math.inf):
            db.execute(
                "INSERT INTO feedback (metric, value, time, unit_id, experiment, matched) "
                "VALUES ('revenue', ?, 1200.0, ?, 'exp', 1)",
                (value, unit),
            )


def _check_status_and_reports(status_json: bytes, reports: dict[str, str]) -> None:
    document = orjson.loads(status_json)
    unusable = document["health"]["unusable"]
    assert any("control: feedback:revenue" in line for line in unusable)
    assert any("treatment: feedback:revenue" in line for line in unusable)
    arms = {arm["arm"]: arm for arm in document["arms"]}
    assert arms["control"]["metrics"]["feedback:revenue"] is None  # left out: no value, not a crash
    assert arms["control"]["metrics"]["feedback:clicks"] == pytest.approx(1.0)  # the rest still analysed
    assert arms["control"]["metrics"]["latency"] > 0.0
    report = orjson.loads(reports["json"])
    check = next(c for c in report["health"]["checks"] if c["name"] == "stored values")
    assert check["level"] == "warning" and "feedback:revenue" in check["detail"]
    assert "4 raw feedback values" in check["detail"]
    assert "stored values" in reports["md"] and "<svg" in reports["html"]


async def test_a_sqlite_store_with_overflowed_values_is_analysed_after_a_restart(
    tmp_path: Path, simulate: Simulate
) -> None:
    path = tmp_path / "events.db"
    async with SqliteEventStore(path) as store:
        split = await _traffic(store, simulate)
        unit = next(u for u in (f"u{i}" for i in range(300)) if split.arm_of(u) == "control")
    _poison_sqlite(path, unit)
    async with SqliteEventStore(path) as store:  # a restart: the new version opens the old file
        # Writing on top of an overflowed unit total must not fail (a failed batch is retried forever).
        await store.write([Feedback("revenue", 5.0, 1300.0, unit_id=unit)])
        status = await status_of("exp", config(), split, store, now=2000.0)
        report = await build_report("exp", config(), split, store, now=2000.0)
        reports = {fmt: str(render(report, fmt)) for fmt in ("json", "md", "html")}
    _check_status_and_reports(status.to_json(), reports)


async def test_a_redis_store_with_unreadable_sums_is_analysed(redis_url: str, simulate: Simulate) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    async with RedisEventStore(redis_url, prefix=prefix) as store:
        split = await _traffic(store, simulate)
        client = store.client
        for arm, (n, s, ss) in {"control": ("2", "inf", "inf"), "treatment": ("1", "nan", "x")}.items():
            field = "feedback:revenue\x1f"  # metric and statistic, as the store joins them
            mapping = {field + "n": n, field + "s": s, field + "ss": ss}
            await client.hset(f"{prefix}exp:0:moments:{arm}", mapping=mapping)
        await client.hset(f"{prefix}exp:0:units:control", mapping={"s:feedback:revenue": "inf"})
        await client.hset(f"{prefix}exp:0:units:treatment", mapping={"ss:feedback:revenue": "nan"})
        for value in ("1e308", "1e308", "nan", "inf"):
            await client.xadd(
                f"{prefix}exp:raw:feedback",
                {"metric": "revenue", "value": value, "time": "1200", "unit_id": "u1", "experiment": "exp",
                 "matched": "1"},
            )  # fmt: skip
        status = await status_of("exp", config(), split, store, now=2000.0)
        report = await build_report("exp", config(), split, store, now=2000.0)
        reports = {fmt: str(render(report, fmt)) for fmt in ("json", "md", "html")}
    _check_status_and_reports(status.to_json(), reports)


async def test_non_finite_values_written_directly_are_counted_not_summed(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "events.db") as store:
        await store.write([Exposure("exp", "control", "u1", "r1", 1.0)])
        await store.write(
            [Feedback("revenue", value, 2.0, request_id="r1") for value in (math.nan, math.inf, 1e308, 2.0)]
        )
        data = await store.phase_data("exp", 0)
        assert data.counter("nonfinite_feedback") == 3
        assert data.arm("control").moments["feedback:revenue"].mean == 2.0
        assert not data.unusable
        split = AbSplit("exp", config())
        status = await status_of("exp", config(), split, store, now=3.0)
        assert "3 feedback values were not finite and were left out" in status.health.unusable


async def test_a_file_from_before_exposure_ids_keeps_joining_feedback_by_request_id(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the tables as the previous release made them
        db.executescript(SCHEMA)
        db.execute(
            "INSERT INTO exposures (experiment, phase, arm, unit_id, request_id, time, forced, excluded) "
            "VALUES ('exp', 0, 'treatment', 'u1', 'old-request', 1.0, 0, 0)"
        )
        db.execute("INSERT INTO unit_latest VALUES ('exp', 'u1', 0, 'treatment', 1)")
    async with SqliteEventStore(path) as store:
        targets = await store.feedback_targets(Feedback("revenue", 1.0, 2.0, request_id="old-request"))
        assert [(t.experiment, t.arm) for t in targets] == [("exp", "treatment")]
        rows = await store.export_rows("exp", "exposures")
        assert rows[0]["exposure_id"] == "old-request"

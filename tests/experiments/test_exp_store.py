"""Both event stores: running statistics equal a recomputation from raw events, feedback joins the
right arm, state is compare-and-set, raw events export."""

from __future__ import annotations

import csv
import importlib
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments.events import Decision, Exposure, Feedback, Outcome, OutputSummary
from experiments.stats import RatioSummary
from experiments.store import ParquetUnavailable, export_events
from experiments.store.base import COUNTER_CROSSOVERS, COUNTER_EXCLUDED, COUNTER_FORCED, EventStore
from experiments.store.export import write_parquet
from experiments.store.redis import RedisEventStore
from experiments.store.rows import COLUMNS


def traffic(
    rng: np.random.Generator, units: int = 60
) -> tuple[list[Exposure | Outcome], dict[str, dict[str, list[float]]]]:
    """Exposures and outcomes for units split over arms a/b, and per unit [requests, errors, latency]."""
    events: list[Exposure | Outcome] = []
    truth: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for u in range(units):
        arm = "a" if u % 2 else "b"
        unit = f"u{u}"
        for r in range(int(rng.integers(1, 6))):
            request_id = f"{unit}-{r}"
            error = bool(rng.random() < 0.3)
            latency = float(rng.uniform(0.01, 0.3))
            events.append(Exposure("e", arm, unit, request_id, 1.0))
            outputs = (OutputSummary("label", (str(u % 3),)), OutputSummary("score", (), latency * 10))
            events.append(
                Outcome(request_id, "e", arm, unit, 1.0, latency, 500 if error else 200, error, 100, outputs)
            )
            totals = truth[arm].setdefault(unit, [0.0, 0.0, 0.0])
            totals[0] += 1
            totals[1] += error
            totals[2] += latency
    return events, truth


async def test_unit_statistics_match_a_recomputation(store: EventStore) -> None:
    events, truth = traffic(np.random.default_rng(3))
    for start in range(0, len(events), 23):  # many small batches, as a recorder would write
        await store.write(events[start : start + 23])
    data = await store.phase_data("e", 0)
    for arm in ("a", "b"):
        units = np.array(list(truth[arm].values()))
        stored = data.arm(arm)
        assert stored.units == len(units)
        assert stored.exposures == stored.requests == int(units[:, 0].sum())
        for metric, column in (("error_rate", 1), ("latency", 2)):
            expected = RatioSummary.from_units(units[:, column], units[:, 0])
            got = stored.ratio(metric)
            assert got is not None
            assert float(got.ratio) == pytest.approx(float(expected.ratio), rel=1e-9)
            assert float(got.ratio_variance) == pytest.approx(float(expected.ratio_variance), rel=1e-6)
        score = stored.ratio("output:score")
        assert score is not None and float(score.ratio) == pytest.approx(
            10 * units[:, 2].sum() / units[:, 0].sum()
        )
        assert sum(stored.labels["label"].values()) == stored.requests
        assert stored.latency.total == stored.requests
        assert stored.moments["error"].mean == pytest.approx(units[:, 1].sum() / units[:, 0].sum())


async def test_feedback_joins_the_arm_by_request_and_by_unit(store: EventStore) -> None:
    await store.write(
        [
            Exposure("e", "a", "u1", "r1", 1.0),
            Exposure("e", "b", "u2", "r2", 1.0),
            Exposure("e", "b", "u3", "r3", 1.0),
            Exposure("other", "x", "u1", "r1", 1.0),
        ]
    )
    await store.write(
        [
            Feedback("conversion", 1.0, 2.0, request_id="r1", experiment="e"),
            Feedback("conversion", 1.0, 2.0, unit_id="u2"),
            Feedback("conversion", 3.0, 2.0, request_id="r2"),
            Feedback("conversion", 1.0, 2.0, request_id="missing"),
        ]
    )
    data = await store.phase_data("e", 0)
    assert data.arm("a").moments["feedback:conversion"].total == 1.0
    assert data.arm("b").moments["feedback:conversion"].total == 4.0
    assert data.arm("b").metric_value("feedback:conversion") == pytest.approx(
        2.0
    )  # per unit: (1 + 3 + 0) / 2
    other = await store.phase_data("other", 0)
    assert "feedback:conversion" not in other.arm("x").moments  # r1's feedback named experiment e
    unmatched = await store.export_rows("*", "feedback")
    assert [row["request_id"] for row in unmatched] == ["missing"] and unmatched[0]["matched"] is False


async def test_feedback_in_the_same_batch_as_its_exposure_joins(store: EventStore) -> None:
    await store.write([Exposure("e", "b", "u9", "r9", 1.0), Feedback("clicks", 2.0, 1.5, request_id="r9")])
    assert (await store.phase_data("e", 0)).arm("b").moments["feedback:clicks"].total == 2.0


async def test_forced_and_excluded_traffic_is_counted_not_analysed(store: EventStore) -> None:
    await store.write(
        [
            Exposure("e", "a", "u1", "r1", 1.0, forced=True),
            Exposure("e", "unassigned", "u2", "r2", 1.0, excluded=True),
            Outcome("r1", "e", "a", "u1", 1.0, 0.1, 200, False, forced=True),
            Feedback("conversion", 1.0, 2.0, request_id="r1"),
        ]
    )
    data = await store.phase_data("e", 0)
    assert data.counter(COUNTER_FORCED) == 1 and data.counter(COUNTER_EXCLUDED) == 1
    assert data.arm("a").units == 0 and data.arm("a").requests == 0
    assert "feedback:conversion" not in data.arm("a").moments


async def test_a_unit_in_two_arms_is_a_crossover(store: EventStore) -> None:
    await store.write([Exposure("e", "a", "u1", "r1", 1.0), Exposure("e", "a", "u2", "r2", 1.0)])
    await store.write([Exposure("e", "b", "u1", "r3", 1.0), Exposure("e", "b", "u1", "r4", 1.0)])
    data = await store.phase_data("e", 0)
    assert data.counter(COUNTER_CROSSOVERS) == 1


async def test_phases_are_kept_apart(store: EventStore) -> None:
    await store.write(
        [Exposure("e", "a", "u1", "r1", 1.0, phase=0), Exposure("e", "a", "u1", "r2", 1.0, phase=2)]
    )
    assert await store.phases("e") == [0, 2]
    assert (await store.phase_data("e", 2)).arm("a").units == 1
    assert (await store.phase_data("e", 1)).arms == {}


async def test_state_is_compare_and_set_on_revision(store: EventStore) -> None:
    assert await store.load_state("k") is None
    assert await store.save_state("k", {"revision": 2, "value": "a"})
    assert not await store.save_state("k", {"revision": 2, "value": "b"})
    assert not await store.save_state("k", {"revision": 1, "value": "c"})
    assert await store.save_state("k", {"revision": 3, "value": "d"})
    assert await store.load_state("k") == {"revision": 3, "value": "d"}


async def test_decisions_keep_their_order_and_evidence(store: EventStore) -> None:
    for i in range(5):
        await store.add_decision(Decision("e", float(i), 0, "hold", (f"reason {i}",), {"i": i}))
    latest = await store.decisions("e", limit=3)
    assert [d.evidence["i"] for d in latest] == [2, 3, 4]
    assert latest[-1].reasons == ("reason 4",)


async def test_raw_events_export_to_csv(store: EventStore, tmp_path: Path) -> None:
    events, _ = traffic(np.random.default_rng(5), units=6)
    await store.write(events)
    path = tmp_path / "outcomes.csv"
    written = await export_events(store, "e", "outcomes", path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    outcomes = [e for e in events if isinstance(e, Outcome)]
    assert written == len(rows) == len(outcomes)
    assert [row["request_id"] for row in rows] == [o.request_id for o in outcomes]
    assert math.isclose(float(rows[0]["latency_s"]), outcomes[0].latency_s)
    exposures = await store.export_rows("e", "exposures")
    assert exposures[0]["forced"] is False and exposures[0]["phase"] == 0


async def test_raw_events_export_to_parquet_with_the_csv_rows_and_typed_columns(
    store: EventStore, tmp_path: Path
) -> None:
    parquet: Any = importlib.import_module("pyarrow.parquet")  # in the dev install: never skipped
    events, _ = traffic(np.random.default_rng(6), units=6)
    await store.write([*events, Feedback("conversion", 1.0, 3.0, unit_id="u1")])
    for kind in ("exposures", "outcomes", "feedback"):
        rows = await store.export_rows("e", kind)
        written = await export_events(store, "e", kind, tmp_path / f"{kind}.parquet", "parquet")
        table = parquet.read_table(tmp_path / f"{kind}.parquet")
        assert written == table.num_rows == len(rows) > 0
        assert table.column_names == list(COLUMNS[kind])
        assert table.to_pylist() == [{column: row.get(column) for column in COLUMNS[kind]} for row in rows]
    outcomes = parquet.read_table(tmp_path / "outcomes.parquet")
    assert str(outcomes.schema.field("latency_s").type) == "double"
    exposures = parquet.read_table(tmp_path / "exposures.parquet")
    assert str(exposures.schema.field("forced").type) == "bool"


def test_parquet_export_without_pyarrow_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow is installed here; its absence is simulated by failing its import.
    real_import = importlib.import_module

    def without_pyarrow(name: str, package: str | None = None) -> object:
        if name.split(".")[0] == "pyarrow":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", without_pyarrow)
    with pytest.raises(ParquetUnavailable, match=r"pip install pyarrow"):
        write_parquet("exposures", [], tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


async def test_a_retried_batch_is_applied_once(redis_store: RedisEventStore) -> None:
    """A write whose reply was lost is retried with the same id; Redis must not count it twice."""
    events, truth = traffic(np.random.default_rng(9), units=20)
    feedback = [Feedback("conversion", 1.0, 2.0, unit_id="u1")]
    await redis_store.write([*events, *feedback], batch_id="batch-1")
    first = await redis_store.phase_data("e", 0)
    await redis_store.write([*events, *feedback], batch_id="batch-1")
    again = await redis_store.phase_data("e", 0)
    assert again == first
    assert len(await redis_store.export_rows("e", "outcomes")) == sum(
        int(t[0]) for a in truth.values() for t in a.values()
    )
    await redis_store.write(events[:2], batch_id="batch-2")  # a new batch still counts
    assert (await redis_store.phase_data("e", 0)).arm(events[0].arm).exposures == first.arm(
        events[0].arm
    ).exposures + 1

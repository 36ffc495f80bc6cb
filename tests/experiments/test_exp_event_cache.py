"""Status from a cache of raw events read incrementally: the same answer as a full read, at each
refresh of a growing store (both stores), reading only the rows stored since."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from experiments.analysis import status_of
from experiments.config import AbConfig
from experiments.event_cache import EventCache
from experiments.events import Event, Exposure, Feedback, Outcome
from experiments.splits import AbSplit
from experiments.store.base import EventKind, EventStore


def config() -> AbConfig:
    return AbConfig.model_validate(
        {
            "kind": "ab",
            "unit": "header:x-user-id",
            "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
            "metrics": ["latency", "error_rate", "latency_p50", "feedback:conversion"],
            "segments": ["tenant"],
            "expected_units": 2000,
        }
    )


def _batch(split: AbSplit, start: int, rng: np.random.Generator) -> list[Event]:
    """300 units' exposures and outcomes; feedback by exposure id and by unit id, some for units of
    earlier batches."""
    events: list[Event] = []
    for i in range(start, start + 300):
        unit, arm, now = f"u{i}", split.arm_of(f"u{i}"), 1000.0 + i
        for r in range(2):
            request = f"r{i}-{r}"
            events.append(Exposure("exp", arm, unit, request, now + r, segments=(("tenant", f"t{i % 3}"),)))
            latency = float(rng.lognormal(-3.0, 0.4))
            events.append(
                Outcome(request, "exp", arm, unit, now + r + 0.1, latency, 200, rng.random() < 0.05)
            )
        if rng.random() < 0.3:
            events.append(Feedback("conversion", 1.0, now + 2.0, request_id=f"r{i}-0"))
        if i >= 300 and rng.random() < 0.1:
            events.append(Feedback("conversion", 1.0, now + 2.5, unit_id=f"u{i - 300}"))
    return events


class _Counting:
    """Counts the rows a store hands out through incremental reads."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.rows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def export_rows_after(self, experiment: str, kind: EventKind, cursor: str = "") -> Any:
        rows, cursor = await self.store.export_rows_after(experiment, kind, cursor)
        self.rows += len(rows)
        return rows, cursor


async def test_a_cached_status_equals_a_full_read_at_every_refresh(store: EventStore) -> None:
    split, rng = AbSplit("exp", config()), np.random.default_rng(8)
    counting = _Counting(store)
    cache = EventCache(counting)
    total = 0
    for start in (0, 300, 600):
        batch = _batch(split, start, rng)
        await store.write(batch)
        total += len(batch)  # one stored row per event: every feedback value joins one exposure
        full = await status_of("exp", config(), split, store, now=5000.0)
        cached = await status_of("exp", config(), split, store, now=5000.0, cache=cache)
        assert orjson.loads(cached.to_json()) == orjson.loads(full.to_json())
        assert counting.rows == total  # each row read once, however often the status is asked
    again = await status_of("exp", config(), split, store, now=5000.0, cache=cache)
    assert counting.rows == total and again.comparisons == cached.comparisons
    goal = again.comparison("feedback:conversion")
    assert goal is not None and goal.segments and goal.p_value_sequential < 1.0


async def test_a_report_from_the_cache_equals_one_from_a_full_read(sqlite_store: EventStore) -> None:
    from experiments.report import build_report, render

    split, rng = AbSplit("exp", config()), np.random.default_rng(9)
    cache = EventCache(sqlite_store)
    for start in (0, 300):
        await sqlite_store.write(_batch(split, start, rng))
        full = await build_report("exp", config(), split, sqlite_store, now=5000.0)
        cached = await build_report("exp", config(), split, sqlite_store, now=5000.0, cache=cache)
        assert orjson.loads(render(cached, "json")) == orjson.loads(render(full, "json"))

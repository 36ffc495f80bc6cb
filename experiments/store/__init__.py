"""Event stores: raw events, running statistics, split state and decisions.

`SqliteEventStore(path)` for one gateway process (the default), `RedisEventStore(url)` when several
replicas share one store. Both implement `EventStore` (see `base`); `open_store` picks one.
"""

from __future__ import annotations

from pathlib import Path

from experiments.store.base import EVENT_KINDS, ArmData, EventKind, EventStore, PhaseData
from experiments.store.export import ParquetUnavailable, export_events
from experiments.store.redis import RedisEventStore
from experiments.store.sqlite import SqliteEventStore


def open_store(
    *, redis_url: str | None = None, sqlite_path: str | Path = "turnout-experiments.db"
) -> EventStore:
    """The Redis store when a URL is given, else SQLite at `sqlite_path` (not started: call `start`)."""
    if redis_url:
        return RedisEventStore(redis_url)
    return SqliteEventStore(sqlite_path)


__all__ = [
    "EVENT_KINDS",
    "ArmData",
    "EventKind",
    "EventStore",
    "ParquetUnavailable",
    "PhaseData",
    "RedisEventStore",
    "SqliteEventStore",
    "export_events",
    "open_store",
]

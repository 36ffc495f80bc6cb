"""Token usage for billing, per minute, tenant, principal, model and route, kept in the event store.

The data path adds each completion's usage to a table in memory (`record`: a dict update); the
gateway's housekeeping writes the table in a thread once a second (`write`), adding to the rows
already there, so several gateway processes sharing one store each add their own share. The rows go
where the experiments' events go: the SQLite event store (`state.sqlite_path`), in a table of their
own, or Redis with `state.backend: redis` (`experiments/store/redis_usage.py`).

`usage_rows` reads them back for `turnout usage`, summed over the asked-for columns.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError

from experiments.store.redis_usage import add_usage, read_usage

if TYPE_CHECKING:
    from gateway.config.models.gateway import StateConfig

# One row per minute and key: fine enough for a "since 1h" question, coarse enough that a busy
# gateway writes a few rows per key per minute instead of one per request.
_MINUTE: Final = 60
# How long a flush waits on a database another process is writing (the experiments' recorder).
_BUSY_TIMEOUT_S: Final = 5.0
COLUMNS: Final = ("tenant", "principal", "model", "route")
# Keys (minute x tenant x principal x model x route) kept while Redis is unreachable: at a few
# hundred keys a minute, hours of outage in some tens of MB; past it the held rows are dropped.
_MAX_UNSENT_KEYS: Final = 100_000

_log = logging.getLogger("turnout.usage")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS llm_usage (
    minute INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    principal TEXT NOT NULL,
    model TEXT NOT NULL,
    route TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (minute, tenant, principal, model, route)
)
"""
_ADD: Final = """
INSERT INTO llm_usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (minute, tenant, principal, model, route) DO UPDATE SET
    requests = requests + excluded.requests,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens
"""

_Key = tuple[int, str, str, str, str]


_Row = tuple[str, str, str, str, int, int, int]


class UsageLedger:
    """Usage not yet written; where it goes is the subclass's (`write`)."""

    __slots__ = ("_pending", "where")

    def __init__(self, where: str) -> None:
        self.where = where
        """The store, for log lines."""
        self._pending: dict[_Key, list[int]] = {}

    def record(
        self, tenant: str, principal: str, model: str, route: str, prompt: int, completion: int
    ) -> None:
        key = (int(time.time()) // _MINUTE * _MINUTE, tenant, principal, model, route)
        totals = self._pending.get(key)
        if totals is None:
            self._pending[key] = [1, prompt, completion]
        else:
            totals[0] += 1
            totals[1] += prompt
            totals[2] += completion

    def take(self) -> dict[_Key, list[int]]:
        """What to write, taken on the event loop so that `write` (in a thread) owns it alone."""
        pending, self._pending = self._pending, {}
        return pending

    def write(self, rows: dict[_Key, list[int]]) -> None:
        """Add `rows` to the store (blocking: call it in a thread)."""
        raise NotImplementedError


class SqliteUsageLedger(UsageLedger):
    """Usage in the `llm_usage` table of the SQLite event store."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path

    def write(self, rows: dict[_Key, list[int]]) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S) as db:
            db.execute(_SCHEMA)
            db.executemany(_ADD, [(*key, *totals) for key, totals in rows.items()])
        db.close()


class RedisUsageLedger(UsageLedger):
    """Usage in Redis, shared by the replicas of `state.backend: redis`.

    Redis goes away for seconds at a time (a restart, a failover); usage is billing, so rows a
    flush could not write are held and handed out again by the next `take`, up to
    `_MAX_UNSENT_KEYS`. Writes are one MULTI/EXEC: a failed one wrote nothing, so nothing is counted
    twice. (A reply lost after Redis applied it would count that flush twice; a lost reply is far
    rarer than a lost server.)
    """

    __slots__ = ("_failing", "_unsent", "_unsent_lock", "url")

    def __init__(self, url: str) -> None:
        super().__init__("Redis")  # not the URL: it may hold a password
        self.url = url
        self._unsent: dict[_Key, list[int]] = {}
        # `write` runs in a thread, `take` on the event loop; held only to merge dicts, never
        # across a call to Redis.
        self._unsent_lock = threading.Lock()
        self._failing = False
        """The last write failed: the outage was logged when it began."""

    def take(self) -> dict[_Key, list[int]]:
        pending = super().take()
        if self._unsent:
            with self._unsent_lock:
                unsent, self._unsent = self._unsent, {}
            _merge(pending, unsent)
        return pending

    def write(self, rows: dict[_Key, list[int]]) -> None:
        try:
            add_usage(self.url, rows)
        except RedisError:
            with self._unsent_lock:
                if len(self._unsent) + len(rows) > _MAX_UNSENT_KEYS:
                    raise  # the gateway logs the rows dropped
                _merge(self._unsent, rows)
            if not self._failing:
                self._failing = True
                _log.warning("token usage cannot be written to Redis; held until it can")
            return
        if self._failing:
            self._failing = False
            _log.warning("token usage is written to Redis again, the rows held included")


def _merge(into: dict[_Key, list[int]], rows: dict[_Key, list[int]]) -> None:
    for key, counts in rows.items():
        kept = into.get(key)
        if kept is None:
            into[key] = counts
        else:
            for i, count in enumerate(counts):
                kept[i] += count


def open_usage_ledger(state: StateConfig) -> UsageLedger:
    """The ledger of the configured event store."""
    if state.redis_url is not None:
        return RedisUsageLedger(state.redis_url)
    return SqliteUsageLedger(Path(state.sqlite_path))


def usage_rows(
    since_seconds: float, by: Sequence[str], *, path: Path | None = None, redis_url: str | None = None
) -> list[dict[str, Any]]:
    """Usage since `since_seconds` ago in Redis (`redis_url`) or the SQLite file `path`, summed per
    distinct value of the `by` columns (all of `COLUMNS` when empty), largest token use first."""
    columns = tuple(by) or COLUMNS
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(COLUMNS)}")
    start = int(time.time() - since_seconds) // _MINUTE * _MINUTE
    if redis_url is not None:
        found = read_usage(redis_url, start)
    elif path is not None:
        found = _sqlite_rows(path, start)
    else:
        raise ValueError("usage rows need a SQLite path or a Redis URL")
    picks = [COLUMNS.index(column) for column in columns]
    totals: dict[tuple[str, ...], list[int]] = {}
    for row in found:
        names = row[:4]
        key = tuple(names[i] for i in picks)
        counts = totals.setdefault(key, [0, 0, 0])
        counts[0] += row[4]
        counts[1] += row[5]
        counts[2] += row[6]
    ordered = sorted(totals.items(), key=lambda item: item[1][1] + item[1][2], reverse=True)
    return [
        {
            **dict(zip(columns, key, strict=True)),
            "requests": counts[0],
            "prompt_tokens": counts[1],
            "completion_tokens": counts[2],
        }
        for key, counts in ordered
    ]


def _sqlite_rows(path: Path, start: int) -> list[_Row]:
    """Totals per key (tenant, principal, model, route) from minute `start` on."""
    if not path.exists():
        return []
    names = ", ".join(COLUMNS)
    query = (
        f"SELECT {names}, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens) FROM llm_usage "
        f"WHERE minute >= ? GROUP BY {names}"
    )
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S) as db:
        try:
            found: list[_Row] = db.execute(query, (start,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    db.close()
    return found

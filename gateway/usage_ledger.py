"""Token usage for billing, per minute, tenant, principal, model and route, kept in the event store.

The data path adds each completion's usage to a table in memory (`record`: a dict update); the
gateway's housekeeping writes the table to SQLite in a thread once a second (`flush`), adding to the
rows already there, so several gateway processes sharing one file each add their own share. The
rows go in the experiments' SQLite event store (`state.sqlite_path`), in a table of their own.

`usage_rows` reads them back for `turnout usage`, summed over the asked-for columns.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

# One row per minute and key: fine enough for a "since 1h" question, coarse enough that a busy
# gateway writes a few rows per key per minute instead of one per request.
_MINUTE: Final = 60
# How long a flush waits on a database another process is writing (the experiments' recorder).
_BUSY_TIMEOUT_S: Final = 5.0
COLUMNS: Final = ("tenant", "principal", "model", "route")

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


class UsageLedger:
    """Usage not yet written, and where it goes."""

    __slots__ = ("_pending", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
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
        """Add `rows` to the file (blocking: call it in a thread)."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S) as db:
            db.execute(_SCHEMA)
            db.executemany(_ADD, [(*key, *totals) for key, totals in rows.items()])
        db.close()


def usage_rows(path: Path, since_seconds: float, by: Sequence[str]) -> list[dict[str, Any]]:
    """Usage since `since_seconds` ago, summed per distinct value of the `by` columns (all of
    `COLUMNS` when empty), largest token use first."""
    columns = tuple(by) or COLUMNS
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(COLUMNS)}")
    if not path.exists():
        return []
    start = int(time.time() - since_seconds) // _MINUTE * _MINUTE
    names = ", ".join(columns)  # checked against COLUMNS above: no caller text reaches the query
    query = (
        f"SELECT {names}, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens) FROM llm_usage "
        f"WHERE minute >= ? GROUP BY {names} "
        "ORDER BY SUM(prompt_tokens) + SUM(completion_tokens) DESC"
    )
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S) as db:
        try:
            found = db.execute(query, (start,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    db.close()
    width = len(columns)
    return [
        {
            **dict(zip(columns, row[:width], strict=True)),
            "requests": row[width],
            "prompt_tokens": row[width + 1],
            "completion_tokens": row[width + 2],
        }
        for row in found
    ]

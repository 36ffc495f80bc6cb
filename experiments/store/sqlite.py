"""The SQLite event store: the default for a single gateway process, no server needed.

One connection lives on one dedicated thread (sqlite3 objects must stay on the thread that made
them), so the event loop never blocks on disk and writes are serialised without locks. WAL mode lets
readers (reports, the admin API) read while a batch is written. Each `write` is one transaction: raw
events, feedback joins and statistics move together or not at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import orjson

from experiments.events import Decision, Event, Exposure, Feedback, Outcome
from experiments.file_lease import FileLease
from experiments.finite import finite
from experiments.lease import Lease, LocalLease
from experiments.store.aggregate import ANY_EXPERIMENT, JoinTarget, aggregate, unit_moment_deltas
from experiments.store.base import COUNTER_CROSSOVERS, EventKind, PhaseData, RawMoments, build_phase_data
from experiments.store.rows import BOOL_COLUMNS, COLUMNS, exposure_row, feedback_rows, outcome_row
from experiments.store.sqlite_schema import (
    ADD_COUNTER,
    ADD_HISTOGRAM,
    ADD_LABEL,
    ADD_MOMENT,
    ADD_UNIT_SUM,
    ADD_UNIT_TOTAL,
    ADDED_COLUMNS,
    ADDED_INDEXES,
    SAVE_STATE,
    SCHEMA,
    SET_LATEST,
)

T = TypeVar("T")

# Batch ids are remembered for a day: a journal is replayed at the next start, minutes after a crash.
BATCH_MEMORY_S = 24 * 3600.0
# Forgetting old ids costs an index scan: once per thousand writes is negligible and keeps the table
# at about a day of batches.
_PRUNE_EVERY = 1000
# Several gateway processes (`--processes N`, replicas on one volume) open one file at once. Each
# waits this long for another's lock; switching a new file to WAL can answer "database is locked"
# at once, without waiting, while another connection holds it, so opening is also retried until
# the same deadline.
_BUSY_TIMEOUT_S = 30.0
_OPEN_RETRY_S = 0.05


class SqliteEventStore:
    """Events and statistics in one SQLite file (":memory:" for a throwaway store)."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._writes = 0

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="experiments-sqlite")
        await self._run(self._open)

    async def stop(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("the SQLite event store is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _open(self) -> None:
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self._connection = _open_connection(self._path)
                return
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(_OPEN_RETRY_S)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("the SQLite event store is not started")
        return self._connection

    async def write(self, events: Sequence[Event], *, batch_id: str | None = None) -> None:
        """One transaction per batch: a failed write left nothing behind. A batch id is remembered
        in the same transaction, so a batch replayed from the recorder's journal after a crash that
        came after its write is not applied twice."""
        if events:
            await self._run(self._write, events, batch_id)

    def _write(self, events: Sequence[Event], batch_id: str | None) -> None:
        db = self._db
        exposures = [e for e in events if isinstance(e, Exposure)]
        outcomes = [e for e in events if isinstance(e, Outcome)]
        feedback = [e for e in events if isinstance(e, Feedback)]
        db.execute("BEGIN")
        try:
            if batch_id is not None and not self._first_time(batch_id):
                db.execute("ROLLBACK")
                return
            self._insert_exposures(exposures)
            joined, unmatched = self._join(feedback)
            deltas = aggregate(exposures, outcomes, joined, unmatched)
            self._apply(deltas.moments, deltas.histograms, deltas.labels, deltas.counters)
            self._apply_units(deltas.units)
            self._insert_rows("outcomes", [outcome_row(e) for e in outcomes])
            self._insert_rows(
                "feedback", feedback_rows([(f, t.experiment) for f, t in joined], unmatched, ANY_EXPERIMENT)
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _first_time(self, batch_id: str) -> bool:
        """Remember `batch_id`; False when it was applied before. Ids older than a replay can be
        are forgotten now and then, so the table stays small."""
        now = time.time()
        self._writes += 1
        if self._writes % _PRUNE_EVERY == 0:
            self._db.execute("DELETE FROM batches WHERE time < ?", (now - BATCH_MEMORY_S,))
        return bool(self._db.execute("INSERT OR IGNORE INTO batches VALUES (?, ?)", (batch_id, now)).rowcount)

    def _insert_rows(self, kind: EventKind, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = COLUMNS[kind]
        sql = f"INSERT INTO {kind} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        self._db.executemany(sql, [tuple(_to_sql(row[c]) for c in columns) for row in rows])

    def _insert_exposures(self, exposures: Sequence[Exposure]) -> None:
        self._insert_rows("exposures", [exposure_row(e) for e in exposures])
        self._db.executemany(
            SET_LATEST,
            [(e.experiment, e.unit_id, e.phase, e.arm, int(e.analyzed)) for e in exposures if e.unit_id],
        )

    def _join(self, feedback: Sequence[Feedback]) -> tuple[list[tuple[Feedback, JoinTarget]], list[Feedback]]:
        joined: list[tuple[Feedback, JoinTarget]] = []
        unmatched: list[Feedback] = []
        for item in feedback:
            targets = self._targets(item)
            joined.extend((item, target) for target in targets)
            if not targets:
                unmatched.append(item)
        return joined, unmatched

    async def feedback_targets(self, feedback: Feedback) -> list[JoinTarget]:
        return await self._run(self._targets, feedback)

    def _targets(self, item: Feedback) -> list[JoinTarget]:
        db = self._db
        if item.key:
            rows = db.execute(
                "SELECT experiment, phase, arm, unit_id, forced, excluded FROM exposures "
                "WHERE exposure_id = ?",
                (item.key,),
            ).fetchall()
            return [
                JoinTarget(exp, phase, arm, unit, not (forced or excluded) and bool(unit))
                for exp, phase, arm, unit, forced, excluded in rows
                if item.experiment is None or exp == item.experiment
            ]
        rows = db.execute(
            "SELECT experiment, phase, arm, analyzed FROM unit_latest WHERE unit_id = ?", (item.unit_id,)
        ).fetchall()
        return [
            JoinTarget(exp, phase, arm, item.unit_id, bool(analyzed))
            for exp, phase, arm, analyzed in rows
            if item.experiment is None or exp == item.experiment
        ]

    def _apply(
        self,
        moments: Mapping[tuple[str, int, str, str], list[float]],
        histograms: Mapping[tuple[str, int, str], Mapping[int, int]],
        labels: Mapping[tuple[str, int, str], Mapping[tuple[str, str], int]],
        counters: Mapping[tuple[str, int], Mapping[str, float]],
    ) -> None:
        db = self._db
        db.executemany(ADD_MOMENT, [(*key, *values) for key, values in moments.items()])
        db.executemany(
            ADD_HISTOGRAM,
            [(*key, bucket, n) for key, counts in histograms.items() for bucket, n in counts.items()],
        )
        db.executemany(
            ADD_LABEL,
            [
                (*key, output, label, n)
                for key, counts in labels.items()
                for (output, label), n in counts.items()
            ],
        )
        db.executemany(
            ADD_COUNTER,
            [(*key, name, value) for key, values in counters.items() for name, value in values.items()],
        )

    def _apply_units(self, units: Mapping[tuple[str, int, str, str], Mapping[str, float]]) -> None:
        db = self._db
        sums: list[tuple[str, int, str, str, float]] = []
        crossovers: list[tuple[str, int, str, float]] = []
        for (experiment, phase, arm, unit), deltas in units.items():
            created = (
                db.execute(
                    "INSERT OR IGNORE INTO unit_arms VALUES (?, ?, ?, ?)", (experiment, phase, unit, arm)
                ).rowcount
                == 1
            )
            if created:
                arms = db.execute(
                    "SELECT COUNT(*) FROM unit_arms WHERE experiment = ? AND phase = ? AND unit_id = ?",
                    (experiment, phase, unit),
                ).fetchone()[0]
                if arms == 2:  # counted once, when the unit first shows up in a second arm
                    crossovers.append((experiment, phase, COUNTER_CROSSOVERS, 1.0))
            new_values = {
                counter: finite(
                    db.execute(ADD_UNIT_TOTAL, (experiment, phase, arm, unit, counter, delta)).fetchone()[0]
                )
                for counter, delta in deltas.items()
            }
            for key, value in unit_moment_deltas(created, new_values, deltas).items():
                if value != 0.0:
                    sums.append((experiment, phase, arm, key, value))
        db.executemany(ADD_UNIT_SUM, sums)
        db.executemany(ADD_COUNTER, crossovers)

    async def phase_data(self, experiment: str, phase: int) -> PhaseData:
        return await self._run(self._phase_data, experiment, phase)

    def _phase_data(self, experiment: str, phase: int) -> PhaseData:
        db = self._db
        key = (experiment, phase)
        moments: dict[str, dict[str, RawMoments]] = {}
        for arm, metric, count, total, total_sq in db.execute(
            "SELECT arm, metric, count, total, total_sq FROM moments WHERE experiment = ? AND phase = ?", key
        ):
            moments.setdefault(arm, {})[metric] = (count, total, total_sq)
        histograms: dict[str, dict[int, int]] = {}
        for arm, bucket, count in db.execute(
            "SELECT arm, bucket, count FROM histograms WHERE experiment = ? AND phase = ?", key
        ):
            histograms.setdefault(arm, {})[bucket] = count
        labels: dict[str, dict[str, dict[str, int]]] = {}
        for arm, output, label, count in db.execute(
            "SELECT arm, output, label, count FROM labels WHERE experiment = ? AND phase = ?", key
        ):
            labels.setdefault(arm, {}).setdefault(output, {})[label] = count
        unit_sums: dict[str, dict[str, object]] = {}
        for arm, name, value in db.execute(
            "SELECT arm, key, value FROM unit_sums WHERE experiment = ? AND phase = ?", key
        ):
            unit_sums.setdefault(arm, {})[name] = value
        counters = dict(
            db.execute("SELECT name, value FROM counters WHERE experiment = ? AND phase = ?", key).fetchall()
        )
        return build_phase_data(experiment, phase, moments, histograms, labels, unit_sums, counters)

    async def phases(self, experiment: str) -> list[int]:
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT DISTINCT phase FROM counters WHERE experiment = ? AND phase >= 0 ORDER BY phase",
                (experiment,),
            ).fetchall()
        )
        return [int(row[0]) for row in rows]

    async def add_decision(self, decision: Decision) -> None:
        row = (
            decision.experiment,
            decision.time,
            decision.phase,
            decision.action,
            orjson.dumps(decision.to_dict()),
        )
        await self._run(lambda: self._db.execute("INSERT INTO decisions VALUES (NULL, ?, ?, ?, ?, ?)", row))

    async def decisions(self, experiment: str, limit: int = 1000) -> list[Decision]:
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT payload FROM decisions WHERE experiment = ? ORDER BY id DESC LIMIT ?",
                (experiment, limit),
            ).fetchall()
        )
        return [Decision.from_dict(orjson.loads(row[0])) for row in reversed(rows)]

    async def load_state(self, key: str) -> dict[str, Any] | None:
        row = await self._run(
            lambda: self._db.execute("SELECT payload FROM states WHERE key = ?", (key,)).fetchone()
        )
        return dict(orjson.loads(row[0])) if row else None

    async def save_state(self, key: str, payload: Mapping[str, Any]) -> bool:
        values = (key, int(payload["revision"]), orjson.dumps(dict(payload)).decode())
        return bool(await self._run(lambda: self._db.execute(SAVE_STATE, values).rowcount == 1))

    async def export_rows(self, experiment: str, kind: EventKind) -> list[dict[str, Any]]:
        columns = COLUMNS[kind]
        sql = f"SELECT {', '.join(columns)} FROM {kind} WHERE experiment = ? ORDER BY id"
        rows = await self._run(lambda: self._db.execute(sql, (experiment,)).fetchall())
        return [_from_sql(dict(zip(columns, row, strict=True))) for row in rows]

    async def export_rows_after(
        self, experiment: str, kind: EventKind, cursor: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """Rows after `cursor`, the row id of the last one read (ids only grow: one writer at a time
        assigns them, and rows are never deleted)."""
        columns = COLUMNS[kind]
        sql = f"SELECT id, {', '.join(columns)} FROM {kind} WHERE experiment = ? AND id > ? ORDER BY id"
        after = int(cursor or 0)
        rows = await self._run(lambda: self._db.execute(sql, (experiment, after)).fetchall())
        if not rows:
            return [], cursor
        found = [_from_sql(dict(zip(columns, row[1:], strict=True))) for row in rows]
        return found, str(rows[-1][0])

    def lease(self, name: str, ttl: float, owner: str) -> Lease:
        # Every gateway process of a host on this file competes for one lock file beside it.
        if self._path in ("", ":memory:"):
            return LocalLease(owner)
        return FileLease(f"{self._path}.lease-{name}", owner)


def _open_connection(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the last
        # transactions, and syncing every batch would cost far more than it protects.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(SCHEMA)
        _add_columns(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _is_busy(error: sqlite3.OperationalError) -> bool:
    message = str(error)
    return "locked" in message or "busy" in message


def _add_columns(connection: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to the current columns (in one transaction)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for table, column, fill in ADDED_COLUMNS:
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                connection.execute(fill)
        connection.execute(ADDED_INDEXES)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _to_sql(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _from_sql(row: dict[str, Any]) -> dict[str, Any]:
    for column in BOOL_COLUMNS:
        if column in row and row[column] is not None:
            row[column] = bool(row[column])
    return row

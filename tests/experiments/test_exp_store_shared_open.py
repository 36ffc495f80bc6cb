"""Several gateway processes (`--processes N`, replicas on one volume) open one new SQLite event
store at the same moment. Switching the file to WAL can fail at once with "database is locked",
without waiting for the busy timeout, while another process is switching it too; a gateway process
then refused to start. Every process must open the store and see the same schema."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

from experiments.store.sqlite import SqliteEventStore

PROCESSES = 4
# The race lost about one trial in fifteen before the fix; forty trials make a regression show.
TRIALS = 40


def _open_at_once(path: str, barrier: Barrier) -> str | None:
    barrier.wait()

    async def open_and_close() -> None:
        async with SqliteEventStore(path):
            pass

    try:
        asyncio.run(open_and_close())
    except Exception as error:  # reported to the parent, which fails the test with it
        return repr(error)
    return None


def test_processes_opening_one_new_store_together_all_start(tmp_path: Path) -> None:
    # fork: the children need nothing from a fresh interpreter, and starting one costs a second.
    context = multiprocessing.get_context("fork")
    failures: list[str] = []
    with context.Manager() as manager, context.Pool(PROCESSES) as pool:
        for trial in range(TRIALS):
            path = str(tmp_path / f"events-{trial}.db")
            barrier = manager.Barrier(PROCESSES)
            results = pool.starmap(_open_at_once, [(path, barrier)] * PROCESSES)
            failures += [f"trial {trial}: {result}" for result in results if result is not None]
            with sqlite3.connect(path) as db:
                assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert failures == []

"""The event recorder never blocks the request path, counts drops, retries failed writes, loses
nothing on stop (including a real SIGTERM to a process that records), and after a crash replays its
journal so that only the group being filled is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from experiments.events import Event, Exposure, Feedback, Outcome, OutputSummary
from experiments.journal import EventJournal
from experiments.recorder import EventRecorder
from experiments.store.base import EventStore
from experiments.store.redis import RedisEventStore
from experiments.store.sqlite import SqliteEventStore

ROOT = Path(__file__).resolve().parents[2]
# Deadline for the recording child to start and to exit after SIGTERM on a loaded machine.
CHILD_TIMEOUT_S = 30.0


def exposures(count: int, start: int = 0) -> list[Exposure]:
    return [Exposure("e", "a", f"u{i}", f"r{i}", 1.0) for i in range(start, start + count)]


class GatedStore:
    """A store whose writes wait until the test opens the gate: storage that is slow or stuck."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def write(self, events: Sequence[Event], *, batch_id: str | None = None) -> None:
        self.waiting.set()
        await self.gate.wait()
        await self.inner.write(events)


class FlakyStore:
    """A store whose first `failures` writes raise, like a store restarting."""

    def __init__(self, inner: EventStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def write(self, events: Sequence[Event], *, batch_id: str | None = None) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store restarting")
        await self.inner.write(events)


async def test_record_never_waits_for_a_stuck_store_and_counts_drops(sqlite_store: SqliteEventStore) -> None:
    gated = GatedStore(sqlite_store)
    recorder = EventRecorder(gated, capacity=1000, batch_size=100, flush_interval=0.01)  # type: ignore[arg-type]
    await recorder.start()
    recorder.record(exposures(1)[0])
    await asyncio.wait_for(gated.waiting.wait(), 5)  # the writer is now stuck inside the store
    started = time.perf_counter()
    accepted = [recorder.record(event) for event in exposures(5000, start=1)]
    elapsed = time.perf_counter() - started
    stats = recorder.stats()
    assert elapsed < 1.0  # 5,000 hand-offs while storage is stuck: microseconds each, no waiting
    assert stats.dropped == accepted.count(False) > 0
    assert stats.queued <= 1000
    gated.gate.set()
    await recorder.stop()
    stats = recorder.stats()
    assert stats.written == stats.accepted == 1 + accepted.count(True) and stats.lost == 0
    assert (await sqlite_store.phase_data("e", 0)).arm("a").exposures == stats.accepted


async def test_failed_writes_are_retried(sqlite_store: SqliteEventStore) -> None:
    flaky = FlakyStore(sqlite_store, failures=2)
    recorder = EventRecorder(flaky, batch_size=50, flush_interval=0.01, retry_delay=0.01)  # type: ignore[arg-type]
    await recorder.start()
    for event in exposures(120):
        recorder.record(event)
    deadline = time.monotonic() + 5
    while recorder.stats().written < 120:
        assert time.monotonic() < deadline, "the retried writes never landed"
        await asyncio.sleep(0.01)
    await recorder.stop()
    stats = recorder.stats()
    assert stats.failed_writes == 2 and stats.written == 120 and stats.lost == 0
    assert (await sqlite_store.phase_data("e", 0)).arm("a").units == 120


async def test_a_flush_while_the_background_writer_writes_writes_each_group_once(
    sqlite_store: SqliteEventStore,
) -> None:
    # The background task is inside the store with the first group when a flush (a reload, the
    # admin API) starts draining the same queue: each group must be written once, in order.
    gated = GatedStore(sqlite_store)
    recorder = EventRecorder(gated, batch_size=100, flush_interval=0.01)  # type: ignore[arg-type]
    await recorder.start()
    for event in exposures(100):
        recorder.record(event)
    await asyncio.wait_for(gated.waiting.wait(), 5)
    for event in exposures(150, start=100):
        recorder.record(event)
    flushing = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0.05)
    gated.gate.set()
    await asyncio.wait_for(flushing, 5)
    await recorder.stop()
    stats = recorder.stats()
    assert stats.written == stats.accepted == 250 and stats.queued == 0 and stats.lost == 0
    assert (await sqlite_store.phase_data("e", 0)).arm("a").exposures == 250


async def test_stop_flushes_every_queued_event(store: EventStore) -> None:
    # A long flush interval: nothing is written before stop() unless a batch fills.
    recorder = EventRecorder(store, batch_size=10_000, flush_interval=60.0, capacity=20_000)
    await recorder.start()
    for event in exposures(3000):
        assert recorder.record(event)
    await recorder.stop()
    assert recorder.stats().written == 3000
    assert (await store.phase_data("e", 0)).arm("a").exposures == 3000


async def test_stop_counts_what_a_dead_store_could_not_take(sqlite_store: SqliteEventStore) -> None:
    flaky = FlakyStore(sqlite_store, failures=10**6)
    recorder = EventRecorder(flaky, flush_interval=60.0, retry_delay=0.01)  # type: ignore[arg-type]
    await recorder.start()
    for event in exposures(10):
        recorder.record(event)
    await recorder.stop(deadline=0.05)
    assert recorder.stats().lost == 10 and recorder.stats().written == 0


CHILD = textwrap.dedent(
    """
    import asyncio, signal, sys
    from experiments.events import Exposure
    from experiments.recorder import EventRecorder
    from experiments.store.redis import RedisEventStore
    from experiments.store.sqlite import SqliteEventStore

    async def main(kind, where):
        store = SqliteEventStore(where) if kind == "sqlite" else RedisEventStore(where, prefix=sys.argv[3])
        await store.start()
        recorder = EventRecorder(store, flush_interval=0.2)
        await recorder.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        count = 0
        while not stop.is_set():
            for _ in range(50):
                recorder.record(Exposure("e", "a", f"u{count}", f"r{count}", 1.0))
                count += 1
            if count == 500:
                print("recording", flush=True)
            await asyncio.sleep(0.001)
        await recorder.stop()
        await store.stop()
        print(recorder.stats().accepted, recorder.stats().dropped, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_sigterm_loses_no_event(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    where = str(tmp_path / "events.db") if kind == "sqlite" else request.getfixturevalue("redis_url")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, where, prefix],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recording"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    accepted, dropped = (int(x) for x in out.split())
    assert accepted >= 500
    store: EventStore = SqliteEventStore(where) if kind == "sqlite" else RedisEventStore(where, prefix=prefix)
    async with store:
        stored = (await store.phase_data("e", 0)).arm("a").exposures
    assert stored == accepted, f"{accepted - stored} events lost ({dropped} dropped at the door)"


async def test_a_crash_loses_only_the_group_being_filled(tmp_path: Path) -> None:
    journal_path = tmp_path / "events.db.recorder-journal"
    async with SqliteEventStore(tmp_path / "events.db") as store:
        journal = EventJournal(journal_path)
        journal.open()
        # Never started: nothing reaches the store, as when a kill -9 comes before any write.
        crashed = EventRecorder(store, batch_size=10, flush_interval=60.0, journal=journal)
        for event in exposures(25):
            assert crashed.record(event)
        journal.close()  # the process dies here: two sealed groups journaled, five events filling
        assert (await store.phase_data("e", 0)).arm("a").exposures == 0
        restarted = EventRecorder(store, batch_size=10, journal=EventJournal(journal_path))
        await restarted.start()
        assert restarted.stats().replayed == 20
        assert (await store.phase_data("e", 0)).arm("a").exposures == 20
        await restarted.stop()
    assert journal_path.stat().st_size == 0  # everything in it is in the store


async def test_a_replayed_group_the_store_already_holds_is_not_applied_twice(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal"
    group = exposures(10)
    async with SqliteEventStore(tmp_path / "events.db") as store:
        journal = EventJournal(journal_path)
        journal.open()
        journal.append("batch-1", group)
        journal.close()
        await store.write(group, batch_id="batch-1")  # written, then the crash came before the clear
        with journal_path.open("ab") as damaged:
            damaged.write(b'{"id": "batch-2", "events": [["e", {"experi')  # a line cut short
        recorder = EventRecorder(store, batch_size=5, journal=EventJournal(journal_path))
        await recorder.start()
        assert recorder.stats().replayed == 10
        for event in exposures(5, start=10):  # a group journaled after the cut-short line
            recorder.record(event)
        journaled = [batch_id for batch_id, _ in EventJournal(journal_path).groups()]
        assert len(journaled) == 2 and journaled[0] == "batch-1"  # the new group is whole
        await recorder.stop()
        assert (await store.phase_data("e", 0)).arm("a").exposures == 15


async def test_the_journal_keeps_every_kind_of_event(tmp_path: Path) -> None:
    events: list[Event] = [
        Exposure("e", "a", "u1", "r1", 1.0, phase=2, forced=True, exposure_id="x1"),
        Outcome("r1", "e", "a", "u1", 2.0, 0.25, 503, True, 10, (OutputSummary("o", ("cat",), 0.5),), 2),
        Feedback("revenue", 3.5, 3.0, unit_id="u1", experiment="e", exposure_id="x1"),
    ]
    journal = EventJournal(tmp_path / "journal")
    journal.open()
    journal.append("b", events)
    journal.close()
    assert list(journal.groups()) == [("b", events)]


def test_processes_sharing_a_store_keep_journals_of_their_own(tmp_path: Path) -> None:
    base = tmp_path / "events.db.recorder-journal"
    first, second = EventJournal(base), EventJournal(base)
    first.open()
    second.open()  # another live process: the base file is taken
    assert first.path == base and second.path == base.with_name(base.name + ".1")
    first.append("from-first", exposures(2))
    second.append("from-second", exposures(3))
    second.clear()  # the second process caught up: the first one's groups stay
    first.close()  # the first process dies without clearing
    successor = EventJournal(base)
    successor.open()
    assert [batch_id for batch_id, _ in successor.groups()] == ["from-first"]
    second.append("later", exposures(1))
    second.close()  # now the second dies too: its journal is an orphan for the next process
    last = EventJournal(base)
    last.open()
    assert last.path == base.with_name(base.name + ".1")  # the base is still the successor's
    assert [batch_id for batch_id, _ in last.groups()] == ["later"]
    last.clear()
    successor.close()
    last.close()

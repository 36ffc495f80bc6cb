"""The event recorder: the request path hands events over without ever waiting for storage.

`record(event)` appends to the group being filled and returns at once; when `capacity` events are
waiting the event is dropped and counted (a slow or dead store must cost the data path nothing, and a
drop is visible in `stats()`). A group is sealed as soon as it holds `batch_size` events, and
`flush_interval` after the previous seal otherwise: sealing gives it a batch id, appends it to the
write-ahead journal when there is one (`experiments.journal`, one `write` call on the event loop),
and queues it for the one background task that writes sealed groups to the store, oldest first.

That bounds what a crash (kill -9) loses: with a journal, only the group being filled (fewer than
`batch_size` events, none older than about `flush_interval`), however slow the store; without one,
every event not yet written. `start()` replays the journal into the store (each group under its
batch id, applied at most once) before anything new is recorded. A failed write keeps its group at
the head of the queue, under the same id, and retries it after `retry_delay`. `stop()` writes
everything still waiting before it returns, so a shutdown on SIGTERM loses no event (while the store
answers; `stats().lost` counts any it could not write within `stop`'s deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from experiments.config import DEFAULT_FLUSH_EVENTS, DEFAULT_FLUSH_INTERVAL_S, DEFAULT_RECORDER_CAPACITY
from experiments.events import Event
from experiments.journal import EventJournal
from experiments.store.base import EventStore

_log = logging.getLogger(__name__)

# The defaults and their reasons live with the config that sets them.
DEFAULT_CAPACITY = DEFAULT_RECORDER_CAPACITY
DEFAULT_BATCH_SIZE = DEFAULT_FLUSH_EVENTS
# After a failed write, wait this long before retrying: a restarting store gets time to come back.
DEFAULT_RETRY_DELAY_S = 1.0
# How long `stop()` keeps trying to write what is left before giving up and counting it lost.
DEFAULT_STOP_DEADLINE_S = 10.0


@dataclass(frozen=True, slots=True)
class RecorderStats:
    accepted: int
    dropped: int
    written: int
    failed_writes: int
    queued: int
    lost: int
    replayed: int = 0
    """Events of the journal written to the store at start (what a crash had left unwritten)."""


class EventRecorder:
    """Bounded, never-blocking hand-off of events to an `EventStore` (start/stop around its life)."""

    def __init__(
        self,
        store: EventStore,
        *,
        capacity: int = DEFAULT_CAPACITY,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
        retry_delay: float = DEFAULT_RETRY_DELAY_S,
        journal: EventJournal | None = None,
    ) -> None:
        if capacity <= 0 or batch_size <= 0:
            raise ValueError("capacity and batch_size must be positive")
        self._store = store
        self._capacity = capacity
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_delay = retry_delay
        self._journal = journal
        self._filling: list[Event] = []
        # Sealed groups in order, each with the batch id it keeps through retries and replays: the
        # store can then tell a retry from a new batch and never apply one twice.
        self._sealed: deque[tuple[list[Event], str]] = deque()
        # One write at a time: `flush` (a reload, the admin API, feedback) and the background task can
        # both be draining; without it both wrote the same head group and the second removal failed.
        self._write_lock = asyncio.Lock()
        self._waiting = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._accepted = 0
        self._dropped = 0
        self._written = 0
        self._failed_writes = 0
        self._lost = 0
        self._replayed = 0

    def record(self, event: Event) -> bool:
        """Queue one event; False (and counted as dropped) when the queue is full. Never blocks."""
        if self._waiting >= self._capacity:
            self._dropped += 1
            return False
        self._filling.append(event)
        self._waiting += 1
        self._accepted += 1
        if len(self._filling) >= self._batch_size:
            self._seal()
            if self._wake is not None:
                self._wake.set()
        return True

    def _seal(self) -> None:
        """Close the group being filled: journal it, then queue it for the store."""
        if not self._filling:
            return
        group, self._filling = self._filling, []
        batch_id = uuid.uuid4().hex
        if self._journal is not None:
            self._journal.append(batch_id, group)
        self._sealed.append((group, batch_id))

    def queued(self) -> Iterator[Event]:
        """Events accepted but not yet written, oldest first (feedback looks here for an exposure
        that is still on its way to the store)."""
        for group, _ in self._sealed:
            yield from group
        yield from self._filling

    def stats(self) -> RecorderStats:
        return RecorderStats(
            self._accepted,
            self._dropped,
            self._written,
            self._failed_writes,
            self._waiting,
            self._lost,
            self._replayed,
        )

    async def start(self) -> None:
        """Replay what the journal holds from a previous life, then start the background writer."""
        if self._task is not None:
            return
        if self._journal is not None:
            await self._replay(self._journal)
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="experiments-recorder")

    async def _replay(self, journal: EventJournal) -> None:
        """Queue the journal's groups ahead of anything new and write them now; a group the store
        already applied (the crash came after its write) is recognised by its batch id. A group the
        store refuses stays queued and journaled, and the background task retries it."""
        journal.open()
        for batch_id, group in journal.groups():
            self._sealed.append((group, batch_id))
            self._waiting += len(group)
            self._replayed += len(group)
        if self._replayed:
            _log.info("experiment events: replaying %d events from the journal", self._replayed)
            await self.flush()

    async def stop(self, deadline: float = DEFAULT_STOP_DEADLINE_S) -> None:
        """Stop the background task, then write every queued event (retrying until `deadline`)."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            if self._wake is not None:
                self._wake.set()
            await task
        self._seal()
        give_up_at = time.monotonic() + deadline
        while self._sealed and time.monotonic() < give_up_at:
            if not await self._write_one_group():
                await asyncio.sleep(min(self._retry_delay, max(0.0, give_up_at - time.monotonic())))
        self._lost += self._waiting
        self._waiting = 0
        self._sealed.clear()
        if self._journal is not None:
            if self._lost == 0:
                self._journal.clear()  # a journal left behind is replayed at the next start
            self._journal.close()

    async def flush(self) -> None:
        """Write everything queued now (stops at the first failed write; the rest stays queued)."""
        self._seal()
        while self._sealed:
            if not await self._write_one_group():
                return

    async def _run(self) -> None:
        wake = self._wake
        if wake is None:
            return
        next_round = time.monotonic() + self._flush_interval
        while not self._stopping:
            # The interval runs from the previous round, so a slow write does not stretch the
            # window; a sealed (full) group wakes the task at once.
            delay = next_round - time.monotonic()
            if delay > 0.0 and not self._sealed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
            wake.clear()
            if self._stopping:
                return
            if time.monotonic() >= next_round:
                self._seal()
                next_round = time.monotonic() + self._flush_interval
            while self._sealed and not self._stopping:
                if not await self._write_one_group():
                    await self._sleep_unless_stopping(self._retry_delay)
                    break
            if not self._sealed and self._journal is not None:
                self._journal.clear()  # the store holds every group the journal has

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        if self._wake is None:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _write_one_group(self) -> bool:
        """Write the oldest sealed group; False when the store refused it (it stays queued). A
        writer that waited for another finds the queue moved on, and writes the next group or none."""
        async with self._write_lock:
            if not self._sealed:
                return True
            group, batch_id = self._sealed[0]
            try:
                await self._store.write(group, batch_id=batch_id)
            except Exception:  # any store failure: keep the group and retry it later
                self._failed_writes += 1
                _log.warning(
                    "experiment events: store write failed; %d events waiting", self._waiting, exc_info=True
                )
                return False
            self._sealed.popleft()
            self._waiting -= len(group)
            self._written += len(group)
            return True

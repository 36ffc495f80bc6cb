"""The event recorder: the request path hands events over without ever waiting for storage.

`record(event)` appends to a bounded in-memory queue and returns at once; when the queue is full the
event is dropped and counted (a slow or dead store must cost the data path nothing, and a drop is
visible in `stats()`). One background task writes the queue to the store in batches: as soon as a
batch fills, and `flush_interval` after the previous round of writes began otherwise. That is the
loss window of a crash (kill -9): the events queued and the batch being written, under two batches
and one interval of traffic while the store keeps up (see `experiments.config.RecorderConfig`).
A failed write keeps its batch at the head of the queue and is retried after `retry_delay`. `stop()`
writes everything still queued before it returns, so a shutdown on SIGTERM loses no event (while the
store answers; `stats().lost` counts any it could not write within `stop`'s deadline).
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
    ) -> None:
        if capacity <= 0 or batch_size <= 0:
            raise ValueError("capacity and batch_size must be positive")
        self._store = store
        self._capacity = capacity
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_delay = retry_delay
        self._queue: deque[Event] = deque()
        # A batch whose write failed is retried as is, under the same id, before anything newer: the
        # store can then tell a retry from a new batch and never apply one twice.
        self._retry: tuple[list[Event], str] | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._accepted = 0
        self._dropped = 0
        self._written = 0
        self._failed_writes = 0
        self._lost = 0

    def record(self, event: Event) -> bool:
        """Queue one event; False (and counted as dropped) when the queue is full. Never blocks."""
        if len(self._queue) >= self._capacity:
            self._dropped += 1
            return False
        self._queue.append(event)
        self._accepted += 1
        if len(self._queue) >= self._batch_size and self._wake is not None:
            self._wake.set()
        return True

    def queued(self) -> Iterator[Event]:
        """Events accepted but not yet written, oldest first (feedback looks here for an exposure
        that is still on its way to the store)."""
        if self._retry is not None:
            yield from self._retry[0]
        yield from self._queue

    @property
    def _backlog(self) -> int:
        return len(self._queue) + (len(self._retry[0]) if self._retry else 0)

    def stats(self) -> RecorderStats:
        return RecorderStats(
            self._accepted, self._dropped, self._written, self._failed_writes, self._backlog, self._lost
        )

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="experiments-recorder")

    async def stop(self, deadline: float = DEFAULT_STOP_DEADLINE_S) -> None:
        """Stop the background task, then write every queued event (retrying until `deadline`)."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            if self._wake is not None:
                self._wake.set()
            await task
        give_up_at = time.monotonic() + deadline
        while self._backlog and time.monotonic() < give_up_at:
            if not await self._write_one_batch():
                await asyncio.sleep(min(self._retry_delay, max(0.0, give_up_at - time.monotonic())))
        self._lost += self._backlog
        self._queue.clear()
        self._retry = None

    async def flush(self) -> None:
        """Write everything queued now (stops at the first failed write; the rest stays queued)."""
        while self._backlog:
            if not await self._write_one_batch():
                return

    async def _run(self) -> None:
        wake = self._wake
        if wake is None:
            return
        next_round = time.monotonic() + self._flush_interval
        while not self._stopping:
            # The interval runs from the start of the previous round, so a slow write does not
            # stretch the window; a full batch wakes the task at once.
            delay = next_round - time.monotonic()
            if delay > 0.0 and len(self._queue) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
            wake.clear()
            if self._stopping:
                return
            next_round = time.monotonic() + self._flush_interval
            while self._backlog and not self._stopping:
                if not await self._write_one_batch():
                    await self._sleep_unless_stopping(self._retry_delay)
                    break

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        if self._wake is None:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _write_one_batch(self) -> bool:
        if self._retry is not None:
            batch, batch_id = self._retry
        else:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            batch_id = uuid.uuid4().hex
        try:
            await self._store.write(batch, batch_id=batch_id)
        except Exception:  # any store failure: keep the batch and retry it later
            self._failed_writes += 1
            self._retry = (batch, batch_id)
            _log.warning(
                "experiment events: store write failed; %d events waiting", self._backlog, exc_info=True
            )
            return False
        self._retry = None
        self._written += len(batch)
        return True

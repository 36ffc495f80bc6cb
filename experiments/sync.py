"""Keeping every replica's splits on the newest published state.

A state change (a controller's step, an operator's pause) is made on one replica's split and
published to the store with compare-and-set on its revision; every replica polls the store and
adopts any newer revision. With SQLite (one process) publishing still persists the state, so a
restart resumes where it left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from experiments.splits.base import Split
from experiments.store.base import EventStore

_log = logging.getLogger(__name__)

# Replicas adopt a published change within about a second: fast enough for a canary step or an
# operator's pause, and one small read per experiment per second costs the store nothing.
DEFAULT_POLL_INTERVAL_S = 1.0


class SplitStateSync:
    def __init__(
        self, store: EventStore, splits: Mapping[str, Split], *, interval: float = DEFAULT_POLL_INTERVAL_S
    ) -> None:
        self._store = store
        self._splits = splits
        self._interval = interval
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def publish(self, split: Split) -> bool:
        """Persist the split's current state. False when a newer revision was already stored (then the
        stored state is adopted, and the local change is lost: the caller should say so and retry)."""
        if await self._store.save_state(split.name, split.state_dict()):
            return True
        await self.adopt(split, force=True)
        return False

    async def adopt(self, split: Split, *, force: bool = False) -> bool:
        """Adopt the stored state of one split if it is newer (or differs, with `force`); True when
        it changed the split."""
        payload = await self._store.load_state(split.name)
        return payload is not None and split.apply_dict(payload, force=force)

    async def poll_once(self) -> list[str]:
        """Adopt every newer stored state; the names of the splits that changed."""
        changed = []
        # A snapshot: the mapping is the runtime's, and a reload can add or remove splits while a
        # read from the store is awaited.
        for name, split in list(self._splits.items()):
            if await self.adopt(split):
                changed.append(name)
        return changed

    async def start(self) -> None:
        """Adopt stored states at once (resume after a restart), then keep polling."""
        if self._task is not None:
            return
        await self.poll_once()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name="experiments-state-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and self._stop is not None:
            self._stop.set()
            await task

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            if stop.is_set():
                return
            try:
                await self.poll_once()
            except Exception:  # a store outage must not end the loop; the next poll retries
                _log.warning("experiment state sync: poll failed", exc_info=True)

"""Stored answers in this process: an LRU bounded by entry count and by bytes, with a TTL.

A lookup moves its entry to the young end; a store that pushes the cache past either bound drops
entries from the old end until it fits. An expired entry is dropped when it is looked up, and
otherwise ages out of the LRU like any unused one, so no sweeping task is needed. Nothing here
waits: `get_now` and `put_now` answer at once (the filter calls them without leaving the chain's
synchronous fast path), and the awaitable `get` and `put` of the store protocol wrap them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from plugins._redis import Incrementable
from plugins.cache.entry import ENTRY_OVERHEAD_BYTES, CachedResponse
from plugins.cache.keys import CacheKey


@dataclass(slots=True)
class _Slot:
    entry: CachedResponse
    model: str | None
    expires: float
    size: int


class MemoryCacheStore:
    """The in-process backend. `evictions` counts dropped entries by reason: capacity, expired,
    invalidated."""

    __slots__ = ("_bytes", "_evictions", "_max_bytes", "_max_entries", "_slots", "_ttl")

    def __init__(
        self, *, ttl: float, max_entries: int, max_bytes: int, evictions: Mapping[str, Incrementable]
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._evictions = evictions
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def bytes(self) -> int:
        return self._bytes

    async def start(self) -> None:
        """Nothing to open: the store is a dict."""

    async def stop(self) -> None:
        self._slots.clear()
        self._bytes = 0

    async def get(self, key: CacheKey) -> CachedResponse | None:
        return self.get_now(key)

    async def put(self, key: CacheKey, entry: CachedResponse) -> bool:
        return self.put_now(key, entry)

    def get_now(self, key: CacheKey) -> CachedResponse | None:
        slot = self._slots.get(key.value)
        if slot is None:
            return None
        if slot.expires <= time.monotonic():
            self._drop(key.value, "expired")
            return None
        self._slots.move_to_end(key.value)
        return slot.entry

    def put_now(self, key: CacheKey, entry: CachedResponse) -> bool:
        size = entry.size + len(key.value) + ENTRY_OVERHEAD_BYTES
        if size > self._max_bytes:
            return False
        old = self._slots.pop(key.value, None)
        if old is not None:
            self._bytes -= old.size
        self._slots[key.value] = _Slot(entry, key.model, time.monotonic() + self._ttl, size)
        self._bytes += size
        while len(self._slots) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._slots)), "capacity")
        return True

    async def invalidate(self, model: str | None) -> int:
        doomed = [key for key, slot in self._slots.items() if model is None or slot.model == model]
        for key in doomed:
            self._drop(key, "invalidated")
        return len(doomed)

    def _drop(self, key: str, reason: str) -> None:
        slot = self._slots.pop(key)
        self._bytes -= slot.size
        self._evictions[reason].inc()

"""Stored answers in Redis, shared by every gateway: one string per answer, expiring with its TTL.

Lookups and stores run under the guard's budget; a failure raises `RedisUnavailable` and the filter
treats it as a miss (or skips the store), so a slow or absent Redis costs latency only up to the
budget and never an error. Invalidation is an admin action: it scans the model's keys by prefix
(model names are percent-encoded in keys, so a prefix never matches another model) and unlinks them.
"""

from __future__ import annotations

import asyncio
from typing import Final

from redis.exceptions import RedisError

from gateway.core.errors import ServiceUnavailable
from plugins._redis import RedisGuard
from plugins.cache.entry import CachedResponse
from plugins.cache.keys import CacheKey, model_prefix

# An invalidation may scan a large keyspace; it is bounded so that the admin call still answers.
_INVALIDATE_TIMEOUT_S: Final = 30.0
# Keys asked for per SCAN step and unlinked per call: big enough for few round trips, small enough
# that no single command holds Redis for long.
_SCAN_BATCH: Final = 1000
_GLOB_SPECIAL: Final = str.maketrans({char: "\\" + char for char in "*?[]\\"})


class RedisCacheStore:
    """The shared backend; entries larger than `max_bytes` are not stored."""

    __slots__ = ("_guard", "_max_bytes", "_prefix", "_ttl_ms")

    def __init__(self, guard: RedisGuard, *, prefix: str, ttl: float, max_bytes: int) -> None:
        self._guard = guard
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl * 1000))
        self._max_bytes = max_bytes

    async def start(self) -> None:
        await self._guard.start()

    async def stop(self) -> None:
        await self._guard.stop()

    async def get(self, key: CacheKey) -> CachedResponse | None:
        name = self._prefix + key.value
        raw = await self._guard.run(lambda client: client.get(name))
        if not isinstance(raw, bytes):
            return None
        try:
            return CachedResponse.from_bytes(raw)
        except (ValueError, TypeError):  # not written by this code (a stray key under our prefix)
            return None

    async def put(self, key: CacheKey, entry: CachedResponse) -> bool:
        if entry.size > self._max_bytes:
            return False
        name, value = self._prefix + key.value, entry.to_bytes()
        await self._guard.run(lambda client: client.set(name, value, px=self._ttl_ms))
        return True

    async def invalidate(self, model: str | None) -> int:
        """Remove the model's entries (every entry for None); ServiceUnavailable if Redis fails."""
        prefix = self._prefix.translate(_GLOB_SPECIAL)
        if model is not None:
            prefix += model_prefix(model).translate(_GLOB_SPECIAL)
        client = self._guard.client
        removed = 0
        try:
            async with asyncio.timeout(_INVALIDATE_TIMEOUT_S):
                batch: list[bytes] = []
                async for name in client.scan_iter(match=prefix + "*", count=_SCAN_BATCH):
                    batch.append(name)
                    if len(batch) >= _SCAN_BATCH:
                        removed += await client.unlink(*batch)
                        batch.clear()
                if batch:
                    removed += await client.unlink(*batch)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"cache invalidation failed: Redis is unavailable ({exc})") from exc
        return removed

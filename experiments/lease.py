"""Leader leases: exactly one replica runs a controller at a time.

With Redis, the lease is a key set with NX and an expiry; the holder renews it every tick, and only
while the stored owner is still itself (a compare-and-extend script), so a replica that stalled past
the expiry cannot extend a lease another replica has since taken. If the leader dies, the key
expires and another replica takes over within one TTL. The processes of one host on a SQLite store
share a lock file instead (`experiments.file_lease`); `LocalLease` is for a store only one process uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError


class Lease(Protocol):
    owner: str

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this owner holds it."""

    async def release(self) -> None:
        """Give the lease up (only if still held), so another replica can take over at once."""


class LocalLease:
    """The lease of a single gateway process: always held."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


# Extend the expiry only if this owner still holds the key; take it if nobody does.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    """A lease on one Redis key; `ttl` seconds should cover a few controller ticks."""

    def __init__(self, client: Callable[[], Redis], key: str, ttl: float, owner: str) -> None:
        """`client` gives the store's connection when the lease is used: a controller is built
        (at config load, say) before its store is opened."""
        if ttl <= 0:
            raise ValueError("a lease needs a positive ttl")
        self.owner = owner
        self._client = client
        self._key = key
        self._ttl_ms = max(1, round(ttl * 1000))

    async def acquire(self) -> bool:
        """Take or renew; a Redis failure counts as not holding the lease (never act without it)."""
        try:
            held = await self._client().eval(_ACQUIRE, 1, self._key, self.owner, self._ttl_ms)
        except RedisError:
            return False
        return bool(held)

    async def release(self) -> None:
        try:
            await self._client().eval(_RELEASE, 1, self._key, self.owner)
        except RedisError:
            return None

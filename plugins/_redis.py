"""A Redis client under a time budget, shared by the filters that keep state in Redis.

A filter on the request path must never wait on Redis longer than its budget, and must not keep
paying that budget while Redis is down. `RedisGuard` runs each operation inside `asyncio.timeout`
(the wait for a connection slot, connect, command and reply all count), translates every failure into
`RedisUnavailable` at this one boundary, and after a failure skips Redis for `retry_interval`, so
callers fall back at once instead of queueing on a dead server. The first call after the pause
probes Redis again: recovery needs no restart, because the client reconnects on demand.

At most `_MAX_CONNECTIONS` operations run at once; the others queue on a semaphore, which wakes
waiters first come, first served (redis-py's blocking pool lets a releasing caller take the
connection straight back, which starves some waiters past any budget under load). A request that
spends its whole budget in that queue falls back alone: the process is busy, Redis is not down.

Failures are logged at most once per `_LOG_INTERVAL_S` (with the number of failures since the last
line), and the return of Redis is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

T = TypeVar("T")

# Redis runs commands one at a time, so past a few dozen connections more of them add file
# descriptors and context switches, not throughput; callers beyond this wait (within their budget).
_MAX_CONNECTIONS = 32
# One log line per 10 s is enough to see an outage in the logs without flooding them at 10k rps.
_LOG_INTERVAL_S = 10.0


class Incrementable(Protocol):
    """A counter child (prometheus_client's `Counter.labels(...)`), or anything with `inc`."""

    def inc(self, amount: float = 1) -> None: ...


class RedisUnavailable(Exception):
    """Redis did not answer within the budget, answered with an error, or failed moments ago."""


def bounded_client(url: str, timeout: float) -> Redis:
    """A client whose every socket operation is bounded by `timeout` and which never retries by
    itself (a retry would spend the caller's budget twice). Makes no connection until first use."""
    pool = ConnectionPool.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections


class RedisGuard:
    """Runs operations on one Redis client within a budget; see the module docstring."""

    __slots__ = (
        "_client",
        "_down_until",
        "_errors",
        "_failing",
        "_failures_unlogged",
        "_last_log",
        "_log",
        "_retry_interval",
        "_slots",
        "_timeout",
        "_url",
        "_what",
    )

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retry_interval: float,
        what: str,
        log: logging.Logger,
        errors: Incrementable | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._what = what
        self._log = log
        self._errors = errors
        self._client: Redis | None = None
        self._slots: asyncio.Semaphore | None = None
        self._down_until = 0.0
        self._failing = False
        self._failures_unlogged = 0
        self._last_log = float("-inf")

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def client(self) -> Redis:
        """The client, for operations outside the request path (they bound themselves)."""
        if self._client is None:
            raise RedisUnavailable(f"{self._what}: the Redis client is not started")
        return self._client

    async def start(self) -> None:
        self._client = bounded_client(self._url, self._timeout)
        self._slots = asyncio.Semaphore(_MAX_CONNECTIONS)  # made here: it belongs to the serving loop

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def run(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        """`operation(client)` within the budget; RedisUnavailable on any failure or while paused."""
        client, slots = self._client, self._slots
        if client is None or slots is None:
            raise RedisUnavailable(f"{self._what}: the Redis client is not started")
        if time.monotonic() < self._down_until:
            raise RedisUnavailable(f"{self._what}: Redis failed moments ago; retrying shortly")
        started = False
        try:
            async with asyncio.timeout(self._timeout), slots:
                started = True
                result = await operation(client)
        except (RedisError, OSError) as exc:  # TimeoutError (the budget) is an OSError
            if not started:
                raise RedisUnavailable(
                    f"{self._what}: all {_MAX_CONNECTIONS} Redis connections stayed busy for the whole budget"
                ) from exc
            self._failed(exc)
            raise RedisUnavailable(f"{self._what}: Redis is unavailable ({_describe(exc)})") from exc
        if self._failing:
            self._recovered()
        return result

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self._retry_interval
        self._failing = True
        self._failures_unlogged += 1
        if self._errors is not None:
            self._errors.inc()
        if now - self._last_log >= _LOG_INTERVAL_S:
            self._log.warning(
                "%s: Redis at %s is unavailable (%s); %d failure(s) since the last report",
                self._what,
                _redacted(self._url),
                _describe(exc),
                self._failures_unlogged,
            )
            self._last_log = now
            self._failures_unlogged = 0

    def _recovered(self) -> None:
        self._failing = False
        self._failures_unlogged = 0
        self._last_log = float("-inf")
        self._log.warning("%s: Redis at %s answers again", self._what, _redacted(self._url))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer within the time budget"
    return f"{type(exc).__name__}: {exc}"


def _redacted(url: str) -> str:
    """The URL without a password, for log lines."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"

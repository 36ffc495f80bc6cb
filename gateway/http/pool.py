"""Keep-alive connections to one endpoint, with a cap on how many are open."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from gateway.http.upstream import UpstreamConnection, UpstreamFailure
from routing.resilience.circuit_breaker import CircuitBreaker


class EndpointPool:
    """Keep-alive connections to one endpoint, with a cap on how many are open."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        max_connections: int,
        connect_timeout: float,
        idle_timeout: float,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._idle: list[UpstreamConnection] = []
        self._all: set[UpstreamConnection] = set()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        self.wake_sweeper: Callable[[], None] | None = None
        """Set while the cluster's deadline sweeper sleeps for want of exchanges: the next exchange
        to start on one of these connections calls it."""

    @property
    def open_connections(self) -> int:
        return self._open

    def take_idle(self) -> UpstreamConnection | None:
        """An idle keep-alive connection (the most recently used: its socket is warmest), or None."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def acquire(self, breaker: CircuitBreaker | None = None) -> UpstreamConnection:
        """A connection ready for one exchange: an idle one (most recently used first), or a new one.
        When the pool is at its connection cap the request waits for one, as a pending request of
        `breaker`, which refuses it (UpstreamFailure "overloaded") when too many already wait."""
        conn = self.take_idle()
        if conn is not None:
            return conn
        while self._open >= self.max_connections:
            if breaker is not None and not breaker.try_acquire_pending():
                raise UpstreamFailure("overloaded", "too many requests are waiting for a connection")
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if breaker is not None:
                    breaker.release_pending()
            conn = self.take_idle()
            if conn is not None:
                return conn
        return await self._connect()

    async def _connect(self) -> UpstreamConnection:
        self._open += 1
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self._open -= 1
            self._wake_one()
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise UpstreamFailure(
                "connect-failure", f"cannot connect to {self.host}:{self.port}: {reason}"
            ) from None
        assert isinstance(protocol, UpstreamConnection)
        self._all.add(protocol)
        return protocol

    def put_idle(self, conn: UpstreamConnection) -> None:
        if self.closed:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        self._wake_one()

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: free its slot."""
        if not conn.counted:
            return
        conn.counted = False
        self._all.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close_expired(self, now: float) -> None:
        """Close connections idle for longer than the idle timeout."""
        for conn in [c for c in self._idle if now - c.idle_since > self.idle_timeout]:
            conn.close()

    def check_deadlines(self, now: float) -> bool:
        """Fail exchanges whose response head is overdue; True while other exchanges still wait for
        theirs."""
        waiting = False
        for conn in list(self._all):
            if conn.deadline:
                if now > conn.deadline:
                    conn.check_deadline(now)
                else:
                    waiting = True
        return waiting

    def close(self) -> None:
        self.closed = True
        for conn in list(self._idle):
            conn.close()
        self._idle.clear()

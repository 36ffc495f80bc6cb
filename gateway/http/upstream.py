"""Pooled keep-alive HTTP/1.1 connections to upstream endpoints, parsed with llhttp (httptools).

Failures are translated here, once, into the kinds that retry policies and outlier detection reason
about: a connection that could not be made (`connect-failure`), a connection that died before any
response byte (`reset`), a response that did not arrive in time (`timeout`), and a response that broke
mid-way or could not be parsed (`protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools

from routing.resilience.circuit_breaker import CircuitBreaker


class UpstreamFailure(Exception):
    """An upstream exchange failed; `kind` is one of connect-failure, reset, timeout, protocol,
    overloaded (the request could not even wait for a connection)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    content_length: int | None
    keep_alive: bool


class BodySink:
    """Where a streamed response body goes: the client exchange, or a buffer."""

    __slots__ = ()

    def on_body(self, data: bytes) -> None:
        raise NotImplementedError

    def on_end(self) -> None:
        raise NotImplementedError


class BufferSink(BodySink):
    __slots__ = ("chunks", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.chunks: list[bytes] = []
        self.done: asyncio.Future[None] = loop.create_future()

    def on_body(self, data: bytes) -> None:
        self.chunks.append(data)

    def on_end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    __slots__ = (
        "_body_buffer",
        "_complete",
        "_done",
        "_failure",
        "_head",
        "_head_waiter",
        "_headers",
        "_is_head_request",
        "_reason",
        "_received",
        "_sink",
        "closed",
        "counted",
        "deadline",
        "idle_since",
        "parser",
        "pool",
        "reused",
        "transport",
    )

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.counted = True  # holds one of the pool's connection slots until forgotten
        self.reused = False
        self.idle_since = 0.0
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head: ResponseHead | None = None
        self._head_waiter: asyncio.Future[ResponseHead] | None = None
        self._done: asyncio.Future[None] | None = None
        self._failure: UpstreamFailure | None = None
        self.deadline = 0.0
        self._sink: BodySink | None = None
        self._body_buffer: list[bytes] = []
        self._received = False
        self._complete = False
        self._is_head_request = False

    # ----- asyncio.Protocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self._complete:
            return
        if not self._received:
            self._fail(UpstreamFailure("reset", "upstream closed the connection before responding"))
        elif self._head is not None and self._head.content_length is None and not self._chunked_head():
            # A close-delimited body (no length, not chunked) ends with the connection.
            self.on_message_complete()
        else:
            self._fail(UpstreamFailure("protocol", "upstream closed the connection mid-response"))

    def _chunked_head(self) -> bool:
        head = self._head
        if head is None:
            return False
        return any(n.lower() == b"transfer-encoding" for n, _ in head.headers)

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamFailure("protocol", f"malformed upstream response: {exc}"))
            self.close()

    # ----- llhttp callbacks -----

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        length: int | None = None
        for name, value in self._headers:
            if len(name) == 14 and name.lower() == b"content-length":
                length = int(value)
        head = ResponseHead(
            parser.get_status_code(), self._reason, self._headers, length, parser.should_keep_alive()
        )
        self._head = head
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(head)
        if self._is_head_request:
            # A response to HEAD has no body whatever its headers say; llhttp cannot be told so,
            # so end the exchange here and never reuse the connection.
            head.keep_alive = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink.on_body(body)
        else:
            self._body_buffer.append(body)

    def on_message_complete(self) -> None:
        if self._complete:
            return
        self._complete = True
        if self._sink is not None:
            self._sink.on_end()
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    # ----- the exchange -----

    def send_request(self, head: bytes, body: bytes | None, is_head_request: bool, timeout: float) -> None:
        """Start an exchange; the response head must arrive within `timeout` seconds (enforced by
        the pool's sweeper, which is far cheaper than a timer per request)."""
        assert self.transport is not None
        self._reset_exchange()
        self._is_head_request = is_head_request
        loop = self.pool.loop
        self._head_waiter = loop.create_future()
        self.deadline = loop.time() + timeout
        if body:
            self.transport.write(head + body)
        else:
            self.transport.write(head)

    @property
    def head_waiter(self) -> asyncio.Future[ResponseHead]:
        """Resolves with the response head, or fails with an UpstreamFailure."""
        assert self._head_waiter is not None
        return self._head_waiter

    def send_body_chunk(self, data: bytes) -> None:
        """Part of a chunked request body (streamed request)."""
        if self.transport is not None and not self.closed:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n")

    def check_deadline(self, now: float) -> None:
        if self.deadline and now > self.deadline:
            self._timeout()

    def _timeout(self) -> None:
        self._fail(UpstreamFailure("timeout", "upstream did not answer in time"))
        self.close()

    def _fail(self, failure: UpstreamFailure) -> None:
        self.deadline = 0.0
        self._failure = failure
        for fut in (self._head_waiter, self._done):
            if fut is not None and not fut.done():
                fut.set_exception(failure)
                # Retrieve it once so that an unawaited `done` never logs "exception never retrieved".
                fut.exception()

    def stream_body(self, sink: BodySink) -> asyncio.Future[None]:
        """Send the body (what arrived so far and what follows) to `sink`; the future ends with it."""
        self._sink = sink
        if self._body_buffer:
            for chunk in self._body_buffer:
                sink.on_body(chunk)
            self._body_buffer.clear()
        if self._complete:
            sink.on_end()
        done = self._done
        if done is None:
            # Created only for bodies still on their way: most answers are complete with their head.
            done = self._done = self.pool.loop.create_future()
            if self._complete:
                done.set_result(None)
            elif self._failure is not None:
                done.set_exception(self._failure)
        return done

    @property
    def response_complete(self) -> bool:
        return self._complete

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.pool.forget(self)

    def release(self) -> None:
        """Hand the connection back: pooled when the exchange ended cleanly and both sides keep alive."""
        head = self._head
        if self._complete and head is not None and head.keep_alive and not self.closed:
            self._sink = None
            self.resume_reading()
            self.pool.put_idle(self)
        else:
            self.close()


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

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

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

    def check_deadlines(self, now: float) -> None:
        """Fail exchanges whose response head is overdue."""
        for conn in list(self._all):
            if conn.deadline and now > conn.deadline:
                conn.check_deadline(now)

    @property
    def busy_connections(self) -> int:
        return len(self._all) - len(self._idle)

    def close(self) -> None:
        self.closed = True
        for conn in list(self._idle):
            conn.close()
        self._idle.clear()

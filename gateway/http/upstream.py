"""Keep-alive HTTP/1.1 connections to upstream endpoints, parsed with llhttp (httptools).

A connection carries one exchange at a time and reports it to an `ExchangeObserver` as it happens:
the response head, each body chunk, the end, or a failure. The observer (the data path) reacts in
these callbacks directly, so an answer that arrives in one packet is relayed without a single task
switch.

Failures are translated here, once, into the kinds that retry policies and outlier detection reason
about: a connection that could not be made (`connect-failure`), a connection that died before any
response byte (`reset`), a response that did not arrive in time (`timeout`), a response that broke
mid-way or could not be parsed (`protocol`), and our own connection cap (`overloaded`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import httptools

if TYPE_CHECKING:
    from gateway.http.pool import EndpointPool

log = logging.getLogger("turnout.upstream")

# From this body size the head and body go out as two buffers of one writev instead of a copy of
# both in one: measured on uvloop over loopback, the two cost the same up to about 16 KiB, and past
# it the copy grows with the body (at 128 KiB: 84 µs a request against 18 µs).
_WRITEV_BODY_BYTES = 16 * 1024


class UpstreamFailure(Exception):
    """An upstream exchange failed; `kind` is connect-failure, reset, timeout, protocol or overloaded."""

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


class ExchangeObserver(Protocol):
    def on_head(self, head: ResponseHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_end(self) -> None: ...

    def on_error(self, failure: UpstreamFailure) -> None: ...

    def on_data_processed(self) -> None:
        """Called after each packet was parsed, while the exchange is still open (a chance to
        flush what the packet produced in one write)."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to one endpoint."""

    __slots__ = (
        "_body_chunked",
        "_body_open",
        "_complete",
        "_head",
        "_headers",
        "_is_head_request",
        "_reason",
        "_received",
        "_writable",
        "closed",
        "counted",
        "deadline",
        "idle_since",
        "observer",
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
        self.deadline = 0.0
        self.observer: ExchangeObserver | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head: ResponseHead | None = None
        self._received = False
        self._complete = True
        self._is_head_request = False
        # A streamed request body not yet ended with its last chunk: the connection is mid-request
        # even when the answer came first, so it must not go back to the pool.
        self._body_open = False
        self._body_chunked = True
        """The streamed body goes in chunked framing (the client's came chunked)."""
        self._writable: asyncio.Future[None] | None = None
        """Set while the transport's write buffer is over its high-water mark (`pause_writing`)."""

    # ----- asyncio.Protocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.pool.loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def drained(self) -> None:
        """Wait until the upstream has taken what was written (at once unless writing is paused):
        a streamed body is read from the client no faster than the upstream reads it."""
        if self._writable is not None:
            await asyncio.shield(self._writable)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()  # a body pump waiting to write finds the connection closed
        self.pool.forget(self)
        if self._complete or self.observer is None:
            return
        head = self._head
        if not self._received:
            self._fail(UpstreamFailure("reset", "upstream closed the connection before responding"))
        elif head is not None and head.content_length is None and not _is_chunked(head):
            # A close-delimited body (no length, not chunked) ends with the connection.
            self.on_message_complete()
        else:
            self._fail(UpstreamFailure("protocol", "upstream closed the connection mid-response"))

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamFailure("protocol", f"malformed upstream response: {exc}"))
            self.close()
            return
        observer = self.observer
        if observer is not None and not self._complete:
            observer.on_data_processed()

    # ----- llhttp callbacks -----

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.deadline = 0.0
        parser = self.parser
        length: int | None = None
        for name, value in self._headers:
            if len(name) == 14 and name.lower() == b"content-length":
                length = int(value)
        head = ResponseHead(
            parser.get_status_code(), self._reason, self._headers, length, parser.should_keep_alive()
        )
        self._head = head
        if self._is_head_request:
            # A response to HEAD has no body whatever its headers say; llhttp cannot be told so,
            # so the exchange ends here and the connection is not reused.
            head.keep_alive = False
        observer = self.observer
        if observer is not None:
            observer.on_head(head)
        if self._is_head_request:
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        observer = self.observer
        if observer is not None:
            observer.on_body(body)

    def on_message_complete(self) -> None:
        if self._complete:
            return
        self._complete = True
        observer = self.observer
        if observer is not None:
            observer.on_end()

    # ----- the exchange -----

    def send_request(
        self,
        head: bytes,
        body: bytes | None,
        is_head_request: bool,
        timeout: float,
        observer: ExchangeObserver,
    ) -> None:
        """Start an exchange. The response head must arrive within `timeout` seconds, enforced by
        the pool's sweeper (far cheaper than arming a timer for every request)."""
        assert self.transport is not None
        self.observer = observer
        self._headers = []
        self._reason = b""
        self._head = None
        self._received = False
        self._complete = False
        self._body_open = False
        self._body_chunked = True
        self._is_head_request = is_head_request
        self.deadline = self.pool.loop.time() + timeout
        wake_sweeper = self.pool.wake_sweeper
        if wake_sweeper is not None:
            wake_sweeper()  # the first exchange after a quiet spell: deadlines matter again
        if body is None or len(body) < _WRITEV_BODY_BYTES:
            self.transport.write(head + body if body else head)
        else:  # one writev of both, without copying the body behind the head
            self.transport.writelines((head, body))

    def begin_streamed_body(self, chunked: bool = True) -> None:
        """The request's body follows (`send_body_chunk`) after the head just sent: in chunked
        framing, or as it came when the head gave its Content-Length."""
        self._body_open = True
        self._body_chunked = chunked

    def send_body_chunk(self, data: bytes) -> None:
        """Part of a streamed request body, written as it came (no copy) when its length is known,
        in a chunk of its own otherwise; b"" ends it."""
        if not data:
            self._body_open = False
        if self.transport is not None and not self.closed:
            if not self._body_chunked:
                if data:
                    self.transport.write(data)
            else:
                self.transport.write(b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n")

    def check_deadline(self, now: float) -> None:
        if self.deadline and now > self.deadline:
            self._fail(UpstreamFailure("timeout", "upstream did not answer in time"))
            self.close()

    def _fail(self, failure: UpstreamFailure) -> None:
        self.deadline = 0.0
        observer, self.observer = self.observer, None
        if observer is not None:
            observer.on_error(failure)

    def detach(self) -> None:
        """The observer gives up on this exchange (its outcome no longer matters); close next."""
        self.observer = None
        self.deadline = 0.0

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # connection_lost waits for a flush that a stalled upstream never allows.
            self.resume_writing()
            if self.transport is not None:
                self.transport.close()
            self.pool.forget(self)

    def release(self) -> None:
        """Hand the connection back: pooled when the exchange ended cleanly and both sides keep alive."""
        head = self._head
        self.observer = None
        if (
            self._complete
            and head is not None
            and head.keep_alive
            and not self.closed
            and not self._body_open
        ):
            self.resume_reading()
            self.pool.put_idle(self)
        else:
            self.close()


def _is_chunked(head: ResponseHead) -> bool:
    return any(n.lower() == b"transfer-encoding" for n, _ in head.headers)

"""One request/response exchange on a client connection: the request as parsed, and the response writer.

The listener (`gateway/http/listener.py`) creates an exchange when a request's headers are complete
and feeds it the body as it arrives; the data path reads the body and writes the response through it.
Framing (Content-Length, chunked, close-delimited for HTTP/1.0 clients), keep-alive and flow control
are decided here so the data path never writes raw HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from gateway.core.errors import PayloadTooLarge

if TYPE_CHECKING:
    from gateway.http.listener import HttpConnection

# Reason phrases for statuses the gateway itself produces; upstream reasons are relayed as sent.
REASONS: dict[int, bytes] = {
    100: b"Continue",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    301: b"Moved Permanently",
    302: b"Found",
    304: b"Not Modified",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    417: b"Expectation Failed",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}

# Statuses that never carry a body (RFC 9110 6.4.1).
NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))


class HttpExchange:
    """A parsed request and the means to answer it."""

    __slots__ = (
        "_body_chunks",
        "_body_done",
        "_body_error",
        "_body_size",
        "_body_waiter",
        "_continue_sent",
        "_pending",
        "_response_chunked",
        "_response_close_delimited",
        "client_ip",
        "conn",
        "content_length",
        "expect_continue",
        "finished",
        "head_sent",
        "headers",
        "http_version",
        "keep_alive",
        "max_body",
        "method",
        "on_gone",
        "path",
        "query",
        "raw_headers",
        "response_bytes",
        "response_status",
        "target",
    )

    def __init__(
        self,
        conn: HttpConnection,
        method: str,
        target: bytes,
        path: str,
        query: str,
        http_version: str,
        headers: dict[str, str],
        raw_headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        content_length: int | None,
        client_ip: str,
        max_body: int,
    ) -> None:
        self.conn = conn
        self.method = method
        self.target = target
        """The request target as the upstream gets it: `path`, then the query exactly as sent."""
        self.path = path
        """The normalised path (`gateway/core/paths.py`), which everything after the listener reads."""
        self.query = query
        self.http_version = http_version
        self.headers = headers
        self.raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.client_ip = client_ip
        self.max_body = max_body
        self.expect_continue = headers.get("expect", "").lower() == "100-continue"
        self._continue_sent = False
        # A request without a body (no Content-Length, not chunked) is complete at once.
        self._body_done = False
        self._body_chunks: list[bytes] = []
        self._body_size = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self._body_error: Exception | None = None
        self.head_sent = False
        self._pending = b""
        self.finished = False
        self.on_gone: Callable[[], None] | None = None
        """Called when the client disconnects before the response is finished."""
        self.response_status = 0
        self.response_bytes = 0
        self._response_chunked = False
        self._response_close_delimited = False

    # ----- request body (fed by the listener) -----

    def feed_body(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > self.max_body:
            self._body_error = PayloadTooLarge(f"request body exceeds the limit of {self.max_body} bytes")
            self._body_chunks.clear()
            self._wake_reader()
            return
        self._body_chunks.append(data)
        self._wake_reader()

    def feed_body_end(self) -> None:
        self._body_done = True
        self._wake_reader()

    def fail_body(self, error: Exception) -> None:
        self._body_error = error
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def body_complete(self) -> bool:
        return self._body_done and self._body_error is None

    @property
    def body_received(self) -> int:
        """Request body bytes received so far."""
        return self._body_size

    @property
    def buffered_body_size(self) -> int:
        return sum(len(c) for c in self._body_chunks)

    def take_complete_body(self) -> bytes:
        """The whole body when it has fully arrived (call only when `body_complete`)."""
        chunks = self._body_chunks
        if not chunks:
            return b""
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.conn.body_consumed()
        return body

    async def read_chunk(self) -> bytes:
        """The next piece of the request body; b"" at its end. Raises PayloadTooLarge, or ConnectionResetError
        when the client left."""
        self._send_continue()
        while True:
            if self._body_error is not None:
                raise self._body_error
            if self._body_chunks:
                chunks = self._body_chunks
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self.conn.body_consumed()
                return data
            if self._body_done:
                return b""
            self._body_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None

    async def read_body(self) -> bytes:
        """The whole request body (bounded by the listener's body limit)."""
        if self._body_done and self._body_error is None:
            return self.take_complete_body()
        parts: list[bytes] = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def _send_continue(self) -> None:
        if self.expect_continue and not self._continue_sent and not self.head_sent:
            self._continue_sent = True
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # ----- response -----

    def send_head(
        self,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        content_length: int | None,
        reason: bytes | None = None,
    ) -> None:
        """Write the status line and headers. `headers` must not include framing or Connection headers;
        `content_length` None means the length is unknown (chunked, or close-delimited for HTTP/1.0)."""
        lines: list[bytes] = []
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        self.send_head_block(status, b"".join(lines), content_length, reason)

    def send_head_block(
        self, status: int, header_lines: bytes, content_length: int | None, reason: bytes | None = None
    ) -> None:
        """`send_head` with the headers already rendered as `name: value\\r\\n` lines."""
        self.response_status = status
        keep_alive = self.keep_alive and self.conn.accepting
        if status in NO_BODY_STATUSES:
            framing = b""
        elif content_length is not None:
            framing = b"content-length: %d\r\n" % content_length
        elif self.http_version == "1.1":
            self._response_chunked = True
            framing = b"transfer-encoding: chunked\r\n"
        else:
            # HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection.
            self._response_close_delimited = True
            framing = b""
            keep_alive = False
        if not keep_alive:
            self.keep_alive = False
            framing += b"connection: close\r\n"
        elif self.http_version == "1.0":
            framing += b"connection: keep-alive\r\n"
        self.head_sent = True
        # Held back so that the head and the first body bytes leave in one write (one syscall).
        self._pending = b"".join(
            (
                b"HTTP/1.1 %d %s\r\n" % (status, reason or REASONS.get(status, b"Unknown")),
                header_lines,
                framing,
                b"\r\n",
            )
        )

    def flush(self) -> None:
        """Write the head now (for streams, whose first body bytes may be far off)."""
        if self._pending:
            self.conn.write(self._pending)
            self._pending = b""

    def send_body(self, data: bytes) -> None:
        if not data or self.method == "HEAD":
            return
        self.response_bytes += len(data)
        if self._response_chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self._pending:
            data = self._pending + data
            self._pending = b""
        self.conn.write(data)

    def end(self) -> None:
        """The response is complete: the connection moves on to the next request or closes."""
        if self.finished:
            return
        tail = b"0\r\n\r\n" if self._response_chunked and self.method != "HEAD" else b""
        if self._pending or tail:
            self.conn.write(self._pending + tail)
            self._pending = b""
        self.finished = True
        self.conn.exchange_finished(self)

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """A complete response in one call (errors, admin-style answers, cache hits)."""
        if self.finished:
            return
        if self.head_sent:
            self.abort()
            return
        all_headers = [(b"content-type", content_type), *headers]
        self.send_head(status, all_headers, len(body))
        self.send_body(body)
        self.end()

    def abort(self) -> None:
        """Give up on a response already started: the client sees the connection close."""
        if self.finished:
            return
        self._pending = b""
        self.keep_alive = False
        self.finished = True
        self.conn.exchange_aborted(self)

    @property
    def client_connected(self) -> bool:
        return not self.conn.closed

    def set_flow_control(self, pause: Callable[[], None] | None, resume: Callable[[], None] | None) -> None:
        """Register who to pause when the client reads slower than the upstream writes."""
        self.conn.set_producer(pause, resume)

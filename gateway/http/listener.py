"""The HTTP/1.1 listener: a lean asyncio protocol over llhttp (httptools) for the data path.

Why not aiohttp here: its per-request machinery costs ~10x what a proxy may spend. This listener does
only what a reverse proxy needs, and does it strictly:
- keep-alive and `Connection: close`, HTTP/1.0 clients, pipelined requests answered in order;
- `Expect: 100-continue` (the 100 goes out when the body is first read);
- request smuggling refused by llhttp (Content-Length with Transfer-Encoding, duplicate lengths);
- limits on header count, head size (431) and body size (413);
- only HTTP/1.0 and 1.1 (505 for other versions, 400 for HTTP/0.9), Host required in HTTP/1.1 and
  never repeated (RFC 9112 3.2);
- the path normalised once, before anything reads it (`gateway/core/paths.py`): the exchange's path
  and target are the normalised ones, so routes, filters, logs and the upstream see the same path;
- a head-read timeout against slowloris and an idle timeout for keep-alive connections and for a
  request body that stops arriving, all enforced by one sweeper per server instead of a timer per
  request;
- a client that half-closes before its request body ended gets a 400, not a wait for bytes that
  cannot come;
- half-closed connections: a client that shuts its write side still gets its answers;
- HTTP/2 on the same port: a connection whose first bytes are the HTTP/2 preface (gRPC clients
  connect with prior knowledge), or that negotiated ALPN `h2` over TLS, is handed whole to the
  server's `h2` callback (`gateway/grpc/splice.py`); only a connection's first bytes are looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools

from gateway.core.errors import BadRequest, InvalidPath, RequestTimeout, error_body
from gateway.core.paths import normalize_path
from gateway.http.exchange import REASONS, HttpExchange

log = logging.getLogger("turnout.listener")

Handler = Callable[[HttpExchange], None]
"""Called once per request when its head is parsed; answers through the exchange, now or later."""

H2Handler = Callable[[asyncio.Transport, bytes, str, "str | None"], None]
"""Takes over an HTTP/2 connection: its transport, the bytes read so far, the client's address and
its certificate's subject. It sets its own protocol on the transport."""

# RFC 9113 3.4: every HTTP/2 connection with prior knowledge opens with these 24 bytes.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Pipelined requests queued behind the active one before reading pauses: enough for clients that
# pipeline, small enough that one connection cannot make the gateway buffer without bound.
MAX_PIPELINED = 16
# Request body buffered ahead of the reader before reading from the client pauses.
BODY_HIGH_WATER = 256 * 1024
# How often the sweeper looks for connections past their head-read or idle deadline.
SWEEP_INTERVAL_S = 0.5
# llhttp's message for a well-formed version it does not know (HTTP/1.2, HTTP/3.0): RFC 9110 15.6.6
# answers those with 505, not with the 400 of a malformed request line.
_UNKNOWN_VERSION_ERROR = "Invalid HTTP version"


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    keep_escaped_slashes: bool = False
    """Keep %2F and %5C escaped in paths instead of refusing them (`listen.escaped_slashes: keep`)."""


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing and answer with an error."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "_active",
        "_body_mark",
        "_body_mark_at",
        "_body_watched",
        "_first_bytes",
        "_head_bytes",
        "_limits",
        "_parser",
        "_parsing",
        "_peer_eof",
        "_producer_pause",
        "_producer_resume",
        "_queue",
        "_raw_headers",
        "_reading_paused",
        "_ready",
        "_url",
        "_write_paused",
        "accepting",
        "client_ip",
        "closed",
        "deadline",
        "server",
        "tls_subject",
        "transport",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self._parser = httptools.HttpRequestParser(self)
        self._limits = server.limits
        self._url = b""
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._parsing: HttpExchange | None = None
        self._ready: HttpExchange | None = None
        self._active: HttpExchange | None = None
        self._queue: deque[HttpExchange] = deque()
        self._reading_paused = False
        self._write_paused = False
        self._producer_pause: Callable[[], None] | None = None
        self._producer_resume: Callable[[], None] | None = None
        self._peer_eof = False
        # The sweeper's view of the body being received: whose, how many bytes, since when.
        self._body_watched: HttpExchange | None = None
        self._body_mark = 0
        self._body_mark_at = 0.0
        self.closed = False
        self.accepting = True
        # Until the first bytes are looked at (for the HTTP/2 preface): None once they were, else
        # what arrived so far of a first packet too short to tell.
        self._first_bytes: bytes | None = b""
        self.tls_subject: str | None = None
        # Monotonic deadline for the sweeper: the head-read timeout while a head is awaited,
        # the idle timeout between requests, 0 while a request is being handled.
        self.deadline = 0.0

    # ----- asyncio.Protocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else ""
        if self.server.tls:
            self.tls_subject = certificate_subject(transport.get_extra_info("peercert"))
            ssl_object = transport.get_extra_info("ssl_object")
            h2 = self.server.h2
            if h2 is not None and ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                # Never this listener's connection: handed over before its first byte.
                self._first_bytes = None
                self.closed = True
                self.transport = None
                h2(cast(asyncio.Transport, transport), b"", self.client_ip, self.tls_subject)
                return
        self.server.connections.add(self)
        self.deadline = self.server.clock() + self._limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for exchange in (self._parsing, self._active, *self._queue):
            if exchange is not None:
                exchange.fail_body(ConnectionResetError("client closed the connection"))
                if exchange.on_gone is not None and not exchange.finished:
                    exchange.on_gone()
        self._queue.clear()
        if self._producer_resume is not None:
            # Let a paused upstream read again so the data path notices and cleans up.
            self._producer_resume()

    def data_received(self, data: bytes) -> None:
        if self._first_bytes is not None:
            data = self._look_at_first_bytes(data)
            if not data:
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Protocol upgrades (WebSocket) are not proxied; the request itself was dispatched.
            self.accepting = False
        except httptools.HttpParserError as exc:
            # llhttp wraps exceptions raised in callbacks; ours carry the answer to give.
            reject = exc.__context__
            if isinstance(reject, _Reject):
                self._reject(reject.status, reject.message, reject.code)
            elif str(exc) == _UNKNOWN_VERSION_ERROR:
                self._reject(505, "only HTTP/1.0 and HTTP/1.1 are served", "http_version_not_supported")
            else:
                self._reject(400, f"malformed HTTP request: {exc}", "bad_request")
        ready = self._ready
        if ready is not None:
            # Started after the whole packet was parsed, so a body that came with the head is
            # already complete when the handler looks at it.
            self._ready = None
            self._start(ready)

    def _look_at_first_bytes(self, data: bytes) -> bytes:
        """The connection's first bytes: an HTTP/2 preface hands the connection over (answers b"");
        anything else is answered back for the HTTP/1.1 parser. A first packet shorter than the
        preface that could still begin it is kept until more arrives (b"")."""
        data = self._first_bytes + data if self._first_bytes else data
        if len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            self._first_bytes = data
            return b""
        self._first_bytes = None
        h2 = self.server.h2
        if h2 is None or not data.startswith(H2_PREFACE):
            return data
        transport = self.transport
        if transport is not None and not self.closed:
            # No longer this listener's connection: the sweeper and the drain leave it alone.
            self.closed = True
            self.transport = None
            self.server.connections.discard(self)
            h2(transport, data, self.client_ip, self.tls_subject)
        return b""

    def eof_received(self) -> bool:
        self._peer_eof = True
        parsing = self._parsing
        if parsing is not None:
            # The rest of this body can never arrive: answer now rather than wait for it.
            parsing.fail_body(BadRequest("the client closed its side before the request body ended"))
        # Keep the write side open while there is something to answer; else let asyncio close.
        return self._active is not None or bool(self._queue)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._producer_pause is not None:
            self._producer_pause()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._producer_resume is not None:
            self._producer_resume()

    # ----- llhttp callbacks -----

    def on_message_begin(self) -> None:
        self._url = b""
        self._raw_headers = []
        self._head_bytes = 0
        if self._active is None:
            self.deadline = self.server.clock() + self._limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._limits.max_header_bytes:
            raise _Reject(
                414 if len(self._url) > self._limits.max_header_bytes else 431,
                "request line too long",
                "headers_too_large",
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only collected here (the limits are checked as they grow, so a flood of headers stops
        # early); the name-to-value map is built once, when the head is complete.
        raw = self._raw_headers
        raw.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        limits = self._limits
        if len(raw) > limits.max_headers:
            raise _Reject(431, f"too many request headers (limit {limits.max_headers})", "headers_too_large")
        if self._head_bytes > limits.max_header_bytes:
            raise _Reject(431, f"request headers exceed {limits.max_header_bytes} bytes", "headers_too_large")

    def on_headers_complete(self) -> None:
        parser = self._parser
        url = self._url
        raw = self._raw_headers
        headers: dict[str, str] = {}
        for name, value in raw:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        if len(headers) != len(raw):
            headers = _join_repeated(raw)
        keep_alive = parser.should_keep_alive()
        # Without a Connection header only HTTP/1.1 keeps the connection alive, which saves asking
        # llhttp for the version (it formats a new string each time).
        if keep_alive and "connection" not in headers:
            version = "1.1"
        else:
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                raise _unsupported_version(version)
        if version == "1.1" and "host" not in headers:
            raise _Reject(400, "an HTTP/1.1 request needs a Host header", "bad_request")
        if url[:1] != b"/":
            url = _origin_form(url, headers.get("host"))
        path_bytes, separator, query_bytes = url.partition(b"?")
        sent_path = path_bytes.decode("latin-1")
        limits = self._limits
        try:
            path = normalize_path(sent_path, limits.keep_escaped_slashes)
        except InvalidPath as exc:
            raise _Reject(exc.status, exc.message, exc.code) from None
        if path is not sent_path:
            url = path.encode("latin-1") + separator + query_bytes
        length_text = headers.get("content-length")
        content_length = int(length_text) if length_text is not None else None
        if content_length is not None and content_length > limits.max_body_bytes:
            raise _Reject(
                413,
                f"request body of {content_length} bytes exceeds the limit of {limits.max_body_bytes} bytes",
                "payload_too_large",
            )
        exchange = HttpExchange(
            self,
            parser.get_method().decode("ascii"),
            url,
            path,
            query_bytes.decode("latin-1"),
            version,
            headers,
            self._raw_headers,
            keep_alive,
            content_length,
            self.client_ip,
            limits.max_body_bytes,
        )
        self._parsing = exchange
        if self._active is None and self._ready is None:
            self._ready = exchange
        else:
            self._queue.append(exchange)
            if len(self._queue) >= MAX_PIPELINED:
                self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing
        if exchange is not None:
            exchange.feed_body(body)
            if exchange.buffered_body_size > BODY_HIGH_WATER:
                self._pause_reading()

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        exchange = self._parsing
        if exchange is not None:
            exchange.feed_body_end()
            self._parsing = None

    # ----- exchange lifecycle -----

    def _start(self, exchange: HttpExchange) -> None:
        self._active = exchange
        self.deadline = 0.0
        self.server.start_exchange(exchange)

    def _start_next(self) -> None:
        if self._active is None and self._queue and not self.closed:
            self._start(self._queue.popleft())
            self._resume_reading()

    def exchange_finished(self, exchange: HttpExchange) -> None:
        self.server.exchange_done()
        if exchange is not self._active:
            return
        self._active = None
        transport = self.transport
        if transport is None or self.closed:
            return
        # A body the handler did not read leaves the stream unsynchronised: close rather than guess.
        if not exchange.keep_alive or (not exchange.body_complete and self._parsing is exchange):
            self._close()
            return
        if self._queue:
            # Not started from here: this may run inside the previous answer's callbacks.
            self.server.loop.call_soon(self._start_next)
            return
        if self._peer_eof or not self.accepting:
            self._close()
            return
        self.deadline = self.server.clock() + self._limits.idle_timeout
        self._resume_reading()

    def exchange_aborted(self, exchange: HttpExchange) -> None:
        self.server.exchange_done()
        self._active = None
        self._close()

    def body_consumed(self) -> None:
        if self._reading_paused and len(self._queue) < MAX_PIPELINED:
            self._resume_reading()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def set_producer(self, pause: Callable[[], None] | None, resume: Callable[[], None] | None) -> None:
        self._producer_pause = pause
        self._producer_resume = resume
        if pause is not None and self._write_paused:
            pause()

    def _reject(self, status: int, message: str, code: str) -> None:
        """Answer a request that could not be parsed, then close: the byte stream cannot be trusted."""
        self.accepting = False
        if self._active is not None or self._ready is not None or self._queue:
            # A pipelined request behind others is malformed: answer those first (a 400 now would
            # read as the answer to the first of them), then close without answering this one.
            self._pause_reading()
            return
        body = error_body(status, message, code)
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, REASONS.get(status, b"Error"), len(body))
        )
        self.write(head + body)
        self.server.count_rejection(status)
        self._close()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    # ----- called by the server -----

    def expire(self, now: float) -> None:
        """Close the connection if it is past its head-read or idle deadline; fail a request whose
        body has not moved for the idle timeout."""
        if self.deadline and now > self.deadline and self._active is None:
            if self._parsing is not None or self._head_bytes:
                self._reject(408, "timed out reading the request", "request_timeout")
            else:
                self._close()
            return
        parsing = self._parsing
        if parsing is None:
            return
        # Watched here, not per body chunk, so a request pays nothing for it. A body held back by
        # our own flow control (reading paused) is not the client's stall.
        received = parsing.body_received
        if parsing is not self._body_watched or received != self._body_mark or self._reading_paused:
            self._body_watched = parsing
            self._body_mark = received
            self._body_mark_at = now
        elif now - self._body_mark_at > self._limits.idle_timeout:
            self._body_watched = None
            self.accepting = False
            self._pause_reading()
            parsing.fail_body(RequestTimeout(f"no request body bytes for {self._limits.idle_timeout:g}s"))

    def stop_accepting(self) -> None:
        """Draining: finish what is in progress, take no new request."""
        self.accepting = False
        if self._active is None and not self._queue:
            self._close()


def _join_repeated(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers by lower-case name, a repeated header's values joined as RFC 9110 5.3 allows
    (cookies with "; ", RFC 6265 5.4). A repeated Host is refused (RFC 9112 3.2): the routes and
    the upstream could each pick a different one."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = headers.get(key)
        if previous is None:
            headers[key] = text
        elif key == "host":
            raise _Reject(400, "a request may carry only one Host header", "bad_request")
        else:
            headers[key] = previous + ("; " if key == "cookie" else ", ") + text
    return headers


def _unsupported_version(version: str) -> _Reject:
    if version == "0.9":
        # A request line without a version (HTTP/0.9) or naming 0.9: no HTTP/1.x request at all.
        return _Reject(400, "HTTP/0.9 requests are not served; send HTTP/1.1", "bad_request")
    return _Reject(
        505, f"HTTP/{version} is not served on this listener; send HTTP/1.1", "http_version_not_supported"
    )


def _origin_form(url: bytes, host: str | None) -> bytes:
    """The path and query of an absolute-form target (`http://host/path?q`, RFC 9112 3.2.2), which a
    server must accept. Its authority must be the Host header's value, so that the routes (which read
    Host) and the upstream (which gets the client's Host) agree on the host. Other forms (`*`,
    `host:port`) are for OPTIONS and CONNECT, which a reverse proxy does not serve."""
    scheme, separator, rest = url.partition(b"://")
    if not separator or scheme.lower() not in (b"http", b"https"):
        raise _Reject(400, "the request target must be a path starting with '/'", "bad_request")
    end = len(rest)
    for delimiter in (b"/", b"?"):
        found = rest.find(delimiter)
        if 0 <= found < end:
            end = found
    authority = rest[:end].decode("latin-1")
    if host is None or authority.lower() != host.lower():
        raise _Reject(
            400, "an absolute request target must name the same host as the Host header", "bad_request"
        )
    target = rest[end:]
    return target if target.startswith(b"/") else b"/" + target


# Short names of the certificate subject attributes, as in RFC 4514 strings.
_SUBJECT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


# Characters RFC 4514 escapes anywhere in an attribute value; a leading "#" or space and a trailing
# space are escaped too. Without this a CN of "alice,O=acme" would read as two attributes.
_RDN_SPECIALS = frozenset('"+,;<>\\')


def certificate_subject(peercert: object) -> str | None:
    """The verified client certificate's subject as "CN=alice,O=acme", or None without one: its
    attributes in the certificate's order, values escaped as RFC 4514 does, the attributes of a
    multi-valued RDN joined by "+"."""
    if not isinstance(peercert, dict) or not peercert.get("subject"):
        return None
    rdns = []
    for rdn in peercert["subject"]:
        rdns.append("+".join(f"{_SUBJECT_NAMES.get(key, key)}={_rdn_value(value)}" for key, value in rdn))
    return ",".join(rdns)


def _rdn_value(value: str) -> str:
    escaped = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in _RDN_SPECIALS or (index == 0 and char in "# ") or (index == last and char == " "):
            escaped.append("\\" + char)
        elif char == "\0":
            escaped.append("\\00")
        else:
            escaped.append(char)
    return "".join(escaped)


class HttpServer:
    """Owns the listening socket, its connections and the timeout sweeper."""

    def __init__(self, handler: Handler, limits: ListenerLimits, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.limits = limits
        self.tls = tls
        self.h2: H2Handler | None = None
        """Takes HTTP/2 connections (gRPC); without it their preface is answered as a bad request."""
        self.connections: set[HttpConnection] = set()
        self.active_exchanges = 0
        self._drained: asyncio.Event | None = None  # set by drain() while it waits
        self.rejections: dict[int, int] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.clock: Callable[[], float] = time.monotonic
        """The loop's clock once started (the same clock as time.monotonic, read without a detour)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    async def start(self, host: str, port: int, backlog: int = 1024, reuse_port: bool = False) -> None:
        """Listen on host:port. `reuse_port` lets sibling processes bind the same port (SO_REUSEPORT):
        the kernel then spreads new connections across their listening sockets."""
        self._loop = asyncio.get_running_loop()
        self.clock = self._loop.time
        self._server = await self._loop.create_server(
            lambda: HttpConnection(self),
            host,
            port,
            backlog=backlog,
            reuse_address=True,
            reuse_port=reuse_port or None,
            ssl=self.tls,
        )
        self._sweeper = asyncio.create_task(self._sweep())

    @property
    def port(self) -> int:
        assert self._server is not None
        server: Any = self._server  # uvloop's sockets are a list where asyncio's are a tuple
        return int(server.sockets[0].getsockname()[1])

    def start_exchange(self, exchange: HttpExchange) -> None:
        self.active_exchanges += 1
        try:
            self.handler(exchange)
        except Exception:  # a bug must cost one request, not the connection's event loop
            log.exception("request handler failed")
            exchange.respond(500, error_body(500, "internal error", "internal"))

    def exchange_done(self) -> None:
        self.active_exchanges -= 1
        if self.active_exchanges <= 0 and self._drained is not None:
            self._drained.set()

    def count_rejection(self, status: int) -> None:
        self.rejections[status] = self.rejections.get(status, 0) + 1

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = self.clock()
            for conn in list(self.connections):
                conn.expire(now)

    async def drain(self, timeout: float) -> bool:
        """Stop accepting requests and wait up to `timeout` for in-flight ones. True when all finished."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.stop_accepting()
        if self.active_exchanges > 0:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                return False
        return True

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for conn in list(self.connections):
            conn._close()
        if self._server is not None:
            self._server.close()

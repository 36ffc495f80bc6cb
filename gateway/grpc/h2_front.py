"""HTTP/2 connections of the main port served on the gateway's own transport (no grpcio server).

The HTTP/1.1 listener hands over a connection whose first bytes are the HTTP/2 preface, or that
negotiated ALPN `h2` over TLS (`gateway/http/listener.py`). Spliced to grpcio (`splice.py`), each
call then costs grpcio's server stack (about 250 us of one core) on top of the relay's own work;
here the connection is `gateway/mesh/http2.py`'s `Http2Connection`, inline on the event loop, and
every stream a `NativeCall` (`native_call.py`) that runs the relay's own handlers: the same
decisions, filters and upstream calls as a spliced connection, for every method and call shape.

A connection idle for a minute is pinged, and closed when the ping is not answered in 20 s (as
grpcio's server does, `front_door.py`), so a client that vanished without closing frees its place.
Answers are never compressed (requests compressed with gzip or deflate are inflated). Stopping
sends GOAWAY on every connection, lets the streams in flight finish for the grace period, then
closes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from time import monotonic
from typing import TYPE_CHECKING

from hpack.exceptions import HPACKError

from gateway.grpc.native_call import NativeCall, call_head
from gateway.grpc.splice import Origin, origin_of
from gateway.mesh.hpack_blocks import HeaderReadings
from gateway.mesh.http2 import (
    ACK,
    FRAME_HEAD,
    GOAWAY,
    PING,
    PREFACE,
    CallHandler,
    Http2Connection,
    ServerStream,
    frame,
)

if TYPE_CHECKING:
    from gateway.grpc.relay import Relay

log = logging.getLogger("turnout.grpc")

_HEAD = 9
_GOAWAY_PROTOCOL_ERROR = struct.pack(">II", 0, 1)
# How often a stopping front door looks whether its connections' streams are done.
_DRAIN_POLL = 0.05
# Keep-alive: a connection that received nothing for a minute is pinged; one that has not answered
# within 20 s (several round trips over any real network) is taken as gone. grpcio's listener
# uses the same (front_door.py's KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS).
KEEPALIVE = (60.0, 20.0)
# Request headers (metadata) a stream may carry, as SETTINGS_MAX_HEADER_LIST_SIZE counts them:
# `listen.max_header_bytes`, whose default this is, so a request fits either way. A stream over it
# is answered RESOURCE_EXHAUSTED and the connection serves on (`http2.Http2Connection`).
MAX_HEADER_LIST = 64 * 1024
_PING = frame(PING, 0, 0, b"turnout\x00")


# A REST request over HTTP/2 is answered 505 (HTTP Version Not Supported) with this body.
_REST_REFUSED = "HTTP/2 carries gRPC only on this port: send REST requests over HTTP/1.1\n"


class _Ignored:
    """The handler of a stream answered at once: what the client still sends is dropped."""

    def received(self, message: bytes) -> None:
        pass

    def half_closed(self) -> None:
        pass

    def reset(self) -> None:
        pass


_NOTHING = _Ignored()


class _Connection(asyncio.Protocol):
    """One handed-over client connection."""

    __slots__ = (
        "_active",
        "_buffer",
        "_connections",
        "_h2",
        "_heads",
        "_keepalive",
        "_max_header_list",
        "_max_message",
        "_origin",
        "_pinged",
        "_preface_seen",
        "_relay",
        "_timer",
        "transport",
    )

    def __init__(
        self,
        relay: Relay,
        origin: Origin,
        max_message: int,
        connections: set[_Connection],
        keepalive: tuple[float, float],
        max_header_list: int,
    ) -> None:
        self._relay = relay
        self._max_header_list = max_header_list
        self._keepalive = keepalive
        self._active = False
        self._pinged = False
        self._timer: asyncio.TimerHandle | None = None
        self._origin = origin
        self._connections = connections
        self._buffer = b""
        self._preface_seen = False
        self.transport: asyncio.Transport | None = None
        self._h2: Http2Connection | None = None
        self._heads = HeaderReadings(call_head)
        self._max_message = max_message

    def take(self, transport: asyncio.Transport, first: bytes) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # each answer is one small write the client is waiting for
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections.add(self)
        self._h2 = Http2Connection(
            transport.write,
            {},
            self._max_message,
            fallback=self._call,
            max_header_list=self._max_header_list,
        )
        self._h2.start()
        transport.set_protocol(self)
        self._timer = asyncio.get_running_loop().call_later(self._keepalive[0], self._tick)
        if first:
            self.data_received(first)
        else:
            self._h2.flush_out()

    def _call(self, stream: ServerStream) -> CallHandler:
        head = self._heads.of(stream.headers)
        if not head.content_type.startswith("application/grpc"):  # REST over HTTP/2: not served here
            stream.answer_plain(505, _REST_REFUSED)
            return _NOTHING
        return NativeCall(self._relay, stream, self._origin, head)

    def data_received(self, data: bytes) -> None:
        h2 = self._h2
        assert h2 is not None and self.transport is not None
        self._active = True
        if self._buffer:
            data = self._buffer + data
        h2.batching = True
        try:
            self._buffer = self._frames(h2, data)
        except (ConnectionError, HPACKError) as exc:
            log.info("gRPC: closing a connection that broke HTTP/2: %s", exc)
            h2.flush_out()
            self.transport.write(frame(GOAWAY, 0, 0, _GOAWAY_PROTOCOL_ERROR))
            self.transport.close()
        finally:
            h2.batching = False  # everything this read produced, in one send
            h2.flush_out()

    def _frames(self, h2: Http2Connection, data: bytes) -> bytes:
        """Handles the whole frames in `data`; returns the incomplete rest."""
        if not self._preface_seen:
            if len(data) < len(PREFACE):
                return data
            if data[: len(PREFACE)] != PREFACE:
                raise ConnectionError("not an HTTP/2 connection preface")
            self._preface_seen = True
            data = data[len(PREFACE) :]
        view = memoryview(data)  # of immutable bytes: slices copy nothing and pin nothing
        offset, end = 0, len(data)
        while end - offset >= _HEAD:
            high, low, kind, flags, stream_id = FRAME_HEAD.unpack_from(data, offset)
            length = high << 16 | low
            if end - offset < _HEAD + length:
                break
            stream_id &= 0x7FFFFFFF
            start = offset + _HEAD
            offset = start + length
            if kind == PING and flags & ACK:
                self._pinged = False
            h2.feed_frame(kind, flags, stream_id, view[start:offset])
        return data[offset:]

    def _tick(self) -> None:
        """Keep-alive: ping a connection that was idle, close one that left a ping unanswered."""
        transport, h2 = self.transport, self._h2
        if transport is None or h2 is None or transport.is_closing():
            return
        interval, timeout = self._keepalive
        if self._pinged:
            log.info("gRPC: closing a connection that did not answer a keep-alive ping")
            transport.abort()
            return
        if not self._active:
            self._pinged = True
            h2.write(_PING)
            interval = timeout
        self._active = False
        self._timer = asyncio.get_running_loop().call_later(interval, self._tick)

    def pause_writing(self) -> None:
        pass  # answers queue per stream behind HTTP/2 flow control; calls wait on `_HIGH_WATER`

    def resume_writing(self) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # an HTTP/2 client that stops sending is done with the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._h2 is not None:
            self._h2.lost()  # every call in flight is reset: its upstream call cancelled

    @property
    def open_streams(self) -> int:
        return self._h2.open_streams if self._h2 is not None else 0

    def go_away(self) -> None:
        if self._h2 is not None and self.transport is not None and not self.transport.is_closing():
            self._h2.go_away()
            self._h2.flush_out()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self._h2 is not None:
                self._h2.flush_out()
            self.transport.close()


class NativeFront:
    """The main port's HTTP/2 connections of one gateway process, served on the own transport."""

    def __init__(
        self,
        relay: Relay,
        max_message: int,
        keepalive: tuple[float, float] = KEEPALIVE,
        max_header_list: int = MAX_HEADER_LIST,
    ) -> None:
        """`keepalive`: (idle seconds before a ping, seconds to wait for its answer);
        `max_header_list`: the request headers a stream may carry, in bytes as HTTP/2 counts them."""
        self._relay = relay
        self._max_header_list = max_header_list
        self._keepalive = keepalive
        self._max_message = max_message
        self._connections: set[_Connection] = set()
        self._closed = False

    def take(
        self, transport: asyncio.Transport, first: bytes, client_ip: str, tls_subject: str | None
    ) -> None:
        """The listener's `h2` callback."""
        if self._closed:
            transport.close()
            return
        origin = origin_of(client_ip, tls_subject)
        connection = _Connection(
            self._relay, origin, self._max_message, self._connections, self._keepalive, self._max_header_list
        )
        connection.take(transport, first)

    async def stop(self, grace: float) -> None:
        """GOAWAY on every connection, the streams in flight given up to `grace` seconds, then every
        connection closed (a call still open is reset, and its upstream call cancelled)."""
        self._closed = True
        for connection in list(self._connections):
            connection.go_away()
        deadline = monotonic() + grace
        # Polled: the transport tells no one when a stream closes, and this runs once per stop.
        while monotonic() < deadline and any(c.open_streams for c in self._connections):  # noqa: ASYNC110
            await asyncio.sleep(_DRAIN_POLL)
        for connection in list(self._connections):
            connection.close()

    @property
    def connections(self) -> int:
        return len(self._connections)

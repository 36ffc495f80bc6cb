"""The mesh port: ext_proc connections served here, every other connection handed to grpcio.

Envoy keeps one connection pool per cluster, so a connection carries one of its APIs: the first
call on a connection tells which. A connection whose first call is ext_proc, ext_authz or RLS
(the per-request APIs) is served by `http2.Http2Connection`, with every call that follows on it
(`calls.py`); one that opens with ADS (Envoy's xDS cluster, a proxyless gRPC client) is spliced,
bytes both ways, to the grpcio server that serves every service on a loopback port of its own.

Until the first HEADERS frame the bytes are only held, except one empty SETTINGS frame sent at
once (a grpcio client waits for the server's SETTINGS before its first call): on a spliced
connection the client's acknowledgement of it is taken out of the bytes, since grpcio never sent
it, and grpcio's own SETTINGS follow.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import cast

from hpack import Decoder
from hpack.exceptions import HPACKError

from gateway.mesh.calls import ADS_METHOD
from gateway.mesh.http2 import (
    ACK,
    CONTINUATION,
    END_HEADERS,
    GOAWAY,
    HEADERS,
    PADDED,
    PREFACE,
    PRIORITY_FLAG,
    SETTINGS,
    CallHandler,
    Http2Connection,
    ServerStream,
    frame,
)

log = logging.getLogger("turnout.mesh")

# The largest frame accepted: HTTP/2's maximum frame size setting (RFC 9113, 6.5.2). We never raise
# ours above its 16 KiB default, so this only bounds what a misbehaving client makes us buffer.
_MAX_FRAME = (1 << 24) - 1
_HEAD = 9
_GOAWAY_PROTOCOL_ERROR = struct.pack(">II", 0, 1)
# The bytes held before the first call's headers: a client's preface, settings and window updates
# take well under 1 KiB; 64 KiB bounds a client that sends frames and never a call.
MAX_HELD = 64 << 10
# A connection that opens with ADS is an xDS client's: grpcio serves it (keep-alive pings and all).
SPLICED_FIRST = frozenset((ADS_METHOD, ADS_METHOD.replace("Stream", "Delta")))


class MeshFront(asyncio.Protocol):
    """One client connection on the mesh port."""

    def __init__(
        self,
        handlers: dict[str, Callable[[ServerStream], CallHandler]],
        max_message: int,
        splice_to: Callable[[], tuple[str, int]],
        connections: set[MeshFront],
    ) -> None:
        self._handlers = handlers
        self._max_message = max_message
        self._splice_to = splice_to
        self._connections = connections
        self._buffer = b""
        self._held: list[bytes] = []
        self._held_size = 0
        self._first_block = bytearray()
        self._preface_seen = False
        self._native: Http2Connection | None = None
        self._upstream: asyncio.Transport | None = None
        self._splicing = False
        self._ack_to_drop = True
        self._to_upstream = bytearray()
        self._scan_from = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:  # each answer is one small write that Envoy is waiting for
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections.add(self)
        self.transport.write(frame(SETTINGS, 0, 0))

    def data_received(self, data: bytes) -> None:
        if self._splicing:
            self._splice(data)
            return
        if self._buffer:
            data = self._buffer + data
        if self._native is not None:
            self._native.batching = True
        try:
            self._buffer = self._frames(data)
        except (ConnectionError, HPACKError) as exc:
            log.info("mesh: closing a connection that broke HTTP/2: %s", exc)
            assert self.transport is not None
            if self._native is not None:
                self._native.flush_out()
            self.transport.write(frame(GOAWAY, 0, 0, _GOAWAY_PROTOCOL_ERROR))
            self.transport.close()
        finally:
            native = self._native
            if native is not None:  # everything this read produced, in one send
                native.batching = False
                native.flush_out()

    def _frames(self, data: bytes) -> bytes:
        """Handles the whole frames in `data`; returns the incomplete rest."""
        if not self._preface_seen:
            if len(data) < len(PREFACE):
                return data
            if data[: len(PREFACE)] != PREFACE:
                raise ConnectionError("not an HTTP/2 connection preface")
            self._preface_seen = True
            data = data[len(PREFACE) :]
        view = memoryview(data)  # of immutable bytes: slices copy nothing and pin nothing
        offset = 0
        end = len(data)
        while end - offset >= _HEAD:
            length = int.from_bytes(view[offset : offset + 3], "big")
            if length > _MAX_FRAME:
                raise ConnectionError("a frame larger than HTTP/2 allows")
            if end - offset < _HEAD + length:
                break
            kind = view[offset + 3]
            flags = view[offset + 4]
            stream_id = int.from_bytes(view[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            start = offset + _HEAD
            offset = start + length
            native = self._native
            if native is not None:
                native.feed_frame(kind, flags, stream_id, view[start:offset])
                continue
            self._held.append(data[start - _HEAD : offset])
            self._held_size += _HEAD + length
            if self._held_size > MAX_HELD:
                raise ConnectionError("no call in the connection's first bytes")
            if kind in (HEADERS, CONTINUATION) and self._first_call(kind, flags, view[start:offset]):
                if self._decide(data[offset:]):
                    continue  # served here: the rest are this connection's frames
                return b""  # spliced: the rest went to grpcio
        return data[offset:]

    def _first_call(self, kind: int, flags: int, payload: memoryview) -> bool:
        """Gathers the first header block; True once it is whole."""
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
        self._first_block += payload
        return bool(flags & END_HEADERS)

    def _decide(self, rest: bytes) -> bool:
        """The first call's path chooses: served here (True), or spliced to grpcio with `rest`."""
        headers = cast(list[tuple[str, str]], Decoder().decode(bytes(self._first_block)))
        path = next((value for name, value in headers if name == ":path"), "")
        held, self._held = self._held, []
        transport = self.transport
        assert transport is not None
        if path in self._handlers and path not in SPLICED_FIRST:
            native = Http2Connection(transport.write, self._handlers, self._max_message)
            native.start()
            self._native = native
            for raw in held:
                stream_id = int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
                native.feed_frame(raw[3], raw[4], stream_id, memoryview(raw)[_HEAD:])
            return True
        self._splicing = True
        transport.pause_reading()
        self._scan_from = len(PREFACE)
        self._splice(PREFACE + b"".join(held) + rest)
        host, port = self._splice_to()
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_connection(lambda: _Upstream(self), host, port))
        task.add_done_callback(self._spliced)
        return False

    def _spliced(self, task: asyncio.Task[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]) -> None:
        transport = self.transport
        assert transport is not None
        if task.cancelled() or task.exception() is not None:
            log.warning("mesh: cannot reach the gRPC server: %s", task.exception())
            transport.close()
            return
        upstream = cast(asyncio.Transport, task.result()[0])
        if transport.is_closing():
            upstream.close()
            return
        self._upstream = upstream
        self._splice(b"")
        transport.resume_reading()

    def _splice(self, data: bytes) -> None:
        """Bytes for grpcio, without the client's first SETTINGS acknowledgement (ours)."""
        pending = self._to_upstream
        pending += data
        if self._ack_to_drop:
            offset = self._scan_from
            while len(pending) - offset >= _HEAD:
                length = int.from_bytes(pending[offset : offset + 3], "big")
                if pending[offset + 3] == SETTINGS and pending[offset + 4] & ACK:
                    del pending[offset : offset + _HEAD + length]
                    self._ack_to_drop = False
                    break
                offset += _HEAD + length
            self._scan_from = offset
        upstream = self._upstream
        if upstream is None:
            return
        # Whole frames already scanned can go; the rest waits while the acknowledgement may be in it.
        upto = min(self._scan_from, len(pending)) if self._ack_to_drop else len(pending)
        if upto:
            upstream.write(bytes(pending[:upto]))
            del pending[:upto]
            self._scan_from -= upto

    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._native is not None:
            self._native.lost()
        if self._upstream is not None:
            self._upstream.close()

    def close(self) -> None:
        """Shutdown: a GOAWAY for a connection served here, then the socket closed."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._native is not None:
            self._native.flush_out()
            transport.write(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
        transport.close()


class _Upstream(asyncio.Protocol):
    """The grpcio side of a spliced connection."""

    def __init__(self, front: MeshFront) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        front = self._front.transport
        assert front is not None
        front.write(data)

    def pause_writing(self) -> None:
        if self._front.transport is not None:
            self._front.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._front.transport is not None:
            self._front.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._front.transport is not None:
            self._front.transport.close()

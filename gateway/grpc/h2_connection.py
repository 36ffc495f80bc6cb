"""One HTTP/2 connection of the own client to an upstream endpoint: unary calls on many streams.

A call is one small object (`h2_call.UnaryStream`); every call started in one event-loop turn
goes out in one write. Request headers are HPACK literals without indexing (nothing to track);
answers are decoded by the `hpack` package, a block seen before reused while the dynamic table is
unchanged (`hpack_blocks.HeaderBlocks`). Flow control both ways, and the server's
MAX_CONCURRENT_STREAMS (calls over it wait). A deadline is sent as `grpc-timeout` and kept here
too: the stream is reset with CANCEL when it passes, as it is for a call its caller cancelled.
GOAWAY, a lost connection or used-up stream ids make the connection unusable (`usable`); the
pool (`h2_client.H2Clients`) then opens another, and calls the server never took fail
UNAVAILABLE, so the relay may retry them elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from collections import deque
from typing import cast

import grpc

from gateway.grpc.h2_call import (
    NO_TRAILERS,
    AnswerHead,
    CallError,
    UnaryReply,
    UnaryStream,
    answer_head,
    http_status_error,
    reply_or_error,
    timeout_header,
)
from gateway.grpc.metadata import Metadata
from gateway.mesh.h2_frames import (
    CONNECTION_WINDOW,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    FrameReader,
    HeaderBlockReader,
    frame,
    split_frames,
)
from gateway.mesh.hpack_blocks import HeaderBlocks, HeaderReadings, hpack_integer, hpack_literal

_SETTINGS_ENABLE_PUSH, _SETTINGS_INITIAL_WINDOW_SIZE = 0x2, 0x4
_SETTINGS_MAX_FRAME_SIZE, _SETTINGS_MAX_CONCURRENT = 0x5, 0x3
_DEFAULT_WINDOW, _DEFAULT_FRAME = 65535, 16384
# Our receive window per stream: 4 MiB lets a typical answer arrive in one flight (the loopback or
# data-centre bandwidth-delay product is far below it); refilled once half is consumed.
_STREAM_WINDOW = 4 << 20
_CANCEL, _REFUSED_STREAM = 8, 7
# Stream ids are 31 bits; a connection that used them all is replaced.
_LAST_STREAM_ID = (1 << 31) - 1
# The static parts of every request's header block, pseudo-headers first as RFC 9113 8.3 requires
# (strict servers, Envoy and nginx among them, refuse a request otherwise): :method POST (static 3),
# :scheme http (6), then after :authority and :path, content-type (static name 31)
# application/grpc and te: trailers.
_REQUEST_PSEUDO = b"\x83\x86"
_REQUEST_FIELDS = (
    b"\x0f\x10" + hpack_integer(16, 7, 0) + b"application/grpc" + hpack_literal(b"te", b"trailers")
)


class H2Connection(FrameReader, asyncio.Protocol):
    """One connection to an endpoint; `unary` starts a call on a new stream."""

    def __init__(self, authority: str, max_message: int) -> None:
        self._authority = hpack_literal(b":authority", authority.encode())
        self._max_message = max_message
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._blocks = HeaderBlocks()
        self._heads = HeaderReadings(answer_head)
        self._block_reader = HeaderBlockReader()
        self._calls: dict[int, UnaryStream] = {}
        # Calls whose request waits for the server's window to open.
        self._blocked: dict[int, UnaryStream] = {}
        self._next_id = 1
        self._peer_window = _DEFAULT_WINDOW
        self._peer_frame = _DEFAULT_FRAME
        self._peer_max = 1 << 31
        self._send_window = _DEFAULT_WINDOW
        self._consumed = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._paths: dict[str, bytes] = {}
        self._timeout: tuple[float, bytes] = (-1.0, b"")
        self.usable = True
        """False once lost, going away or out of stream ids: the pool opens another."""

    # ----- connection -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:  # each call is one small write the server is waiting for
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        settings = struct.pack(
            ">HIHI", _SETTINGS_ENABLE_PUSH, 0, _SETTINGS_INITIAL_WINDOW_SIZE, _STREAM_WINDOW
        )
        self._write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", CONNECTION_WINDOW - _DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._transport = None
        calls, self._calls = self._calls, {}
        self._blocked.clear()
        for call in calls.values():
            self._fail(call, CallError(grpc.StatusCode.UNAVAILABLE, "the upstream connection was lost"))
        self._wake()

    def close(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.close()

    def _write(self, data: bytes) -> None:
        """Queue bytes: one send per event-loop turn for every call started in it."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_out)

    def _flush_out(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    # ----- calls -----

    async def unary(self, path: str, message: bytes, metadata: Metadata, timeout: float | None) -> UnaryReply:
        while len(self._calls) >= self._peer_max and self.usable:
            waiter = self._loop.create_future()
            self._waiting.append(waiter)
            await waiter
        if not self.usable:
            raise CallError(grpc.StatusCode.UNAVAILABLE, "the upstream connection is closing")
        stream_id = self._next_id
        self._next_id += 2
        if self._next_id > _LAST_STREAM_ID:
            self.usable = False
        future: asyncio.Future[UnaryReply] = self._loop.create_future()
        call = UnaryStream(stream_id, future, self._peer_window)
        self._calls[stream_id] = call
        self._send_headers(stream_id, self._head(path, metadata, timeout))
        call.pending = b"\x00" + struct.pack(">I", len(message)) + message
        self._send(call)
        if timeout is not None:
            call.timer = self._loop.call_later(timeout, self._expired, call)
        try:
            return await future
        except asyncio.CancelledError:
            if self._calls.pop(stream_id, None) is not None:
                self._reset(call)
            raise

    def _head(self, path: str, metadata: Metadata, timeout: float | None) -> bytes:
        head = self._paths.get(path)
        if head is None:  # the OIP v2 service's few methods: a handful per connection
            head = self._paths[path] = (
                _REQUEST_PSEUDO + self._authority + hpack_literal(b":path", path.encode()) + _REQUEST_FIELDS
            )
        if timeout is not None:
            if timeout != self._timeout[0]:  # a route's timeout, the same call after call
                self._timeout = (timeout, hpack_literal(b"grpc-timeout", timeout_header(timeout)))
            head += self._timeout[1]
        for key, value in metadata:
            if isinstance(value, bytes):
                head += hpack_literal(key.encode(), base64.b64encode(value))
            else:
                head += hpack_literal(key.encode(), value.encode())
        return head

    def _send_headers(self, stream_id: int, block: bytes) -> None:
        size = self._peer_frame
        if len(block) <= size:
            self._write(frame(HEADERS, END_HEADERS, stream_id, block))
            return
        self._write(frame(HEADERS, 0, stream_id, block[:size]))
        for at in range(size, len(block), size):
            last = at + size >= len(block)
            self._write(frame(CONTINUATION, END_HEADERS if last else 0, stream_id, block[at : at + size]))

    def _send(self, call: UnaryStream) -> None:
        """What the windows allow of the request, END_STREAM on its last frame."""
        pending = call.pending
        while pending:
            size = min(len(pending), self._send_window, call.window, self._peer_frame)
            if size <= 0:
                self._blocked[call.id] = call
                break
            flags = END_STREAM if size == len(pending) else 0
            self._write(frame(DATA, flags, call.id, pending[:size]))
            pending = pending[size:]
            self._send_window -= size
            call.window -= size
        call.pending = pending
        if not pending and self._blocked:
            self._blocked.pop(call.id, None)

    def _send_blocked(self) -> None:
        """Send on the calls a window held back (none, nearly always: a server's connection-level
        WINDOW_UPDATE then costs nothing per call in flight)."""
        if not self._blocked:
            return
        calls = self._calls
        for call in list(self._blocked.values()):
            if calls.get(call.id) is call:
                self._send(call)
            else:  # ended meanwhile (reset, expired, failed): nothing more of it goes out
                del self._blocked[call.id]

    def _expired(self, call: UnaryStream) -> None:
        call.timer = None
        if self._calls.pop(call.id, None) is not None:
            self._reset(call)
            self._fail(call, CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    def _reset(self, call: UnaryStream) -> None:
        """Tell the server the call is over (its deadline passed, or the client left)."""
        if call.timer is not None:
            call.timer.cancel()
        self._write(frame(RST_STREAM, 0, call.id, struct.pack(">I", _CANCEL)))
        self._closed_stream()

    def _fail(self, call: UnaryStream, error: CallError) -> None:
        if call.timer is not None:
            call.timer.cancel()
        if not call.future.done():
            call.future.set_exception(error)

    def _closed_stream(self) -> None:
        self._wake()
        if not self.usable and not self._calls and self._transport is not None:
            self._transport.close()  # going away, and nothing left in flight

    def _wake(self) -> None:
        while self._waiting and (len(self._calls) < self._peer_max or not self.usable):
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # ----- receiving -----

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        try:
            offset = split_frames(data, self.feed_frame)
        except Exception:  # a server that broke HTTP/2 (or HPACK): its calls fail, the pool reconnects
            self._buffer = b""
            if self._transport is not None:
                self._transport.abort()
            return
        self._buffer = data[offset:]

    _write_frame = _write

    def _stream_reset(self, stream_id: int, code: int) -> None:
        call = self._calls.pop(stream_id, None)
        if call is not None:
            status = grpc.StatusCode.UNAVAILABLE if code == _REFUSED_STREAM else grpc.StatusCode.INTERNAL
            if code == _CANCEL:
                status = grpc.StatusCode.CANCELLED
            self._fail(call, CallError(status, f"the upstream reset the stream (HTTP/2 error {code})"))
            self._closed_stream()

    def _window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self._send_window += increment
            self._send_blocked()
            return
        call = self._calls.get(stream_id)
        if call is not None:
            call.window += increment
            self._send(call)

    def _settings(self, payload: memoryview) -> None:
        for at in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, at)
            if key == _SETTINGS_INITIAL_WINDOW_SIZE:
                delta, self._peer_window = value - self._peer_window, value
                for call in self._calls.values():
                    call.window += delta
            elif key == _SETTINGS_MAX_FRAME_SIZE:
                self._peer_frame = value
            elif key == _SETTINGS_MAX_CONCURRENT:
                self._peer_max = value
        self._send_blocked()
        self._wake()

    def _goaway(self, last_id: int) -> None:
        """The server takes no new stream: those after `last_id` it never saw (UNAVAILABLE, which
        the relay may retry elsewhere); the rest finish on this connection, then it closes."""
        self.usable = False
        for stream_id in [stream_id for stream_id in self._calls if stream_id > last_id]:
            call = self._calls.pop(stream_id)
            self._fail(call, CallError(grpc.StatusCode.UNAVAILABLE, "the upstream is going away"))
        self._closed_stream()

    def _headers_done(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._blocks.decode(block)  # decoded even for a call gone: HPACK state
        call = self._calls.get(stream_id)
        if call is None:
            return
        head = self._heads.of(headers)
        if call.initial is None and not flags & END_STREAM:
            if head.status != "200":  # no gRPC server's answer: a proxy's error page, say
                self._calls.pop(stream_id, None)
                self._closed_stream()
                self._fail(call, http_status_error(head.status))
                return
            call.initial = head
            return
        self._finish(call, head)

    def _data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        size = len(payload)
        call = self._calls.get(stream_id)
        if call is None:
            return
        call.data += payload
        call.received += size
        if call.received >= _STREAM_WINDOW // 2 and not flags & END_STREAM:
            self._write(frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", call.received)))
            call.received = 0
        if len(call.data) > self._max_message + 5:
            del self._calls[stream_id]
            self._reset(call)
            self._fail(
                call,
                CallError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Received message larger than max ({len(call.data) - 5} vs. {self._max_message})",
                ),
            )
        elif flags & END_STREAM:  # no trailers: the server broke gRPC's protocol
            self._finish(call, NO_TRAILERS)

    def _finish(self, call: UnaryStream, trailers: AnswerHead) -> None:
        """The call's end: its trailers (or a trailers-only answer) say how it went."""
        self._calls.pop(call.id, None)
        self._closed_stream()
        outcome = reply_or_error(call, trailers)
        if isinstance(outcome, CallError):
            self._fail(call, outcome)
            return
        if call.timer is not None:
            call.timer.cancel()
        if not call.future.done():
            call.future.set_result(outcome)

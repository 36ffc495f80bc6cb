"""A small HTTP/2 server for gRPC calls: the transport of ext_proc's per-request path, and of the
main port's gRPC calls (`gateway/grpc/h2_front.py`).

grpcio's Python server costs about 200 us of one core per stream before a handler runs (framing and
HPACK are in C, but every stream crosses from its poller thread to the event loop and builds
several Python objects), which caps ext_proc near 4,000 header-only decisions/s whatever the
decision costs, with a p99 of several milliseconds at 1,000/s (docs/mesh.md has the figures).
Envoy opens one stream per HTTP request, so that cost is per request. This connection does the
few things a gRPC server must, inline on the event loop, with nothing per stream but one small
object:

- frames: DATA, HEADERS + CONTINUATION, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE (the
  rest ignored, as RFC 9113 allows); HPACK decoding by the `hpack` package, a block seen before
  reused while the dynamic table is unchanged (Envoy's repeated request headers are all indexed,
  the same bytes each time); answers encoded as HPACK literals, so nothing to track;
- flow control both ways: receive windows refilled as bytes are consumed, answers queued while
  the peer's windows are closed;
- gRPC's length-prefixed messages (gzip or deflate ones inflated, answers never compressed),
  trailers with `grpc-status` and `grpc-message`;
- with `max_header_list`, request headers over it refused on their stream (RESOURCE_EXHAUSTED),
  their block still decoded so the HPACK table stays in step; far over it, the connection closed.

What a call does is a `CallHandler`'s business (`handlers` maps a method path to a factory); a path
without one goes to the `fallback` factory, or is answered UNIMPLEMENTED without one. `go_away`
takes no new stream and lets those open finish. No keep-alive pings of its own and no server push.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

# Imported from here before they had modules of their own (the `as` keeps them exported).
from gateway.mesh.h2_frames import ACK as ACK
from gateway.mesh.h2_frames import CONNECTION_WINDOW, FrameReader, HeaderBlockReader
from gateway.mesh.h2_frames import CONTINUATION as CONTINUATION
from gateway.mesh.h2_frames import DATA as DATA
from gateway.mesh.h2_frames import END_HEADERS as END_HEADERS
from gateway.mesh.h2_frames import END_STREAM as END_STREAM
from gateway.mesh.h2_frames import FRAME_HEAD as FRAME_HEAD
from gateway.mesh.h2_frames import GOAWAY as GOAWAY
from gateway.mesh.h2_frames import HEADERS as HEADERS
from gateway.mesh.h2_frames import PADDED as PADDED
from gateway.mesh.h2_frames import PING as PING
from gateway.mesh.h2_frames import PREFACE as PREFACE
from gateway.mesh.h2_frames import PRIORITY_FLAG as PRIORITY_FLAG
from gateway.mesh.h2_frames import RST_STREAM as RST_STREAM
from gateway.mesh.h2_frames import SETTINGS as SETTINGS
from gateway.mesh.h2_frames import WINDOW_UPDATE as WINDOW_UPDATE
from gateway.mesh.h2_frames import frame as frame
from gateway.mesh.hpack_blocks import HeaderBlocks as HeaderBlocks
from gateway.mesh.hpack_blocks import hpack_integer as hpack_integer
from gateway.mesh.hpack_blocks import hpack_literal as hpack_literal

_SETTINGS_INITIAL_WINDOW_SIZE, _SETTINGS_MAX_FRAME_SIZE, _SETTINGS_MAX_CONCURRENT = 0x4, 0x5, 0x3
_SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
# RFC 9113's initial window and frame size, until the peer's SETTINGS say otherwise.
_DEFAULT_WINDOW = 65535
_DEFAULT_FRAME = 16384
# Our receive windows: a stream's is refilled once half of HTTP/2's default is consumed, the
# connection's (raised to 16 MiB at once) once 1 MiB is: one WINDOW_UPDATE per few messages of any
# size, never a stall on a body Envoy streams.
_STREAM_REFILL = _DEFAULT_WINDOW // 2
# What a holding handler may have been given and not consumed before its stream's window stops
# being refilled: one default window, so the client is at most two windows ahead of the handler.
_HOLD_LIMIT = _DEFAULT_WINDOW
# zlib's window bits for gRPC's message encodings (gzip's header, zlib's for deflate).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Streams one connection may have open (as the gRPC listener allows: gateway/grpc/front_door.py).
MAX_CONCURRENT_STREAMS = 1024
# With a header list limit (`Http2Connection`'s `max_header_list`): a list over it is still decoded
# in full, so the HPACK dynamic table stays in step with the client's and only its stream is
# refused; this many times the limit, decoded or as received, the connection is closed instead
# (the decoder stops part-way through such a block, and buffering more is a client's attack).
_HARD_HEADER_FACTOR = 16
_NO_ERROR, _PROTOCOL_ERROR, _REFUSED_STREAM = 0, 1, 7
# gRPC status codes used here (grpc/status.h).
UNIMPLEMENTED, INTERNAL, RESOURCE_EXHAUSTED = 12, 13, 8


# A stream's `finished` for an answer that ends with an empty DATA frame instead of trailers.
END_BY_DATA = b"\x00"
# `:status: 200` is static entry 8; `content-type` static name 31, as a literal without indexing.
_RESPONSE_HEAD = b"\x88\x0f\x10" + hpack_integer(16, 7, 0) + b"application/grpc"
_TRAILERS_OK = hpack_literal(b"grpc-status", b"0")


def _trailers(code: int, message: str) -> bytes:
    if code == 0 and not message:
        return _TRAILERS_OK
    block = hpack_literal(b"grpc-status", str(code).encode())
    if message:  # gRPC's percent-encoding of grpc-message (the protocol's spec)
        block += hpack_literal(
            b"grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()
        )
    return block


def _path(headers: list[tuple[str, str]]) -> str:
    return next((value for name, value in headers if name == ":path"), "")


class CallHandler(Protocol):
    """One gRPC call's behaviour: told each message, the client's half-close, and a reset."""

    def received(self, message: bytes) -> None: ...

    def half_closed(self) -> None: ...

    def reset(self) -> None: ...


class ServerStream:
    """One call as its handler sees it: answer messages, then finish with a status."""

    __slots__ = (
        "client_done",
        "conn",
        "drained",
        "finished",
        "head_sent",
        "headers",
        "held",
        "holding",
        "id",
        "pending",
        "received",
        "window",
    )

    def __init__(self, conn: Http2Connection, stream_id: int, window: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.window = window
        self.pending = bytearray()
        self.head_sent = False
        self.client_done = False
        self.finished: bytes | None = None
        """The trailers, once the handler finished, until they are sent."""
        self.received = 0
        self.headers: list[tuple[str, str]] = []
        """The request's header block, pseudo-headers included."""
        self.drained: Callable[[], None] | None = None
        """Called when the answer's queued bytes have all gone out (a handler's backpressure)."""
        self.holding = False
        """Set by a handler that queues messages: the receive window stops being refilled while
        more than a window's worth of what it was given is not yet `consume`d, so a slow consumer
        makes the client wait instead of growing the queue."""
        self.held = 0

    def consume(self, size: int) -> None:
        self.conn.consumed(self, size)

    def send_head(self, block: bytes) -> None:
        """The answer's HEADERS now, with `block` (HPACK literals: initial metadata) after the
        status and content-type."""
        if self.finished is None and not self.head_sent:
            self.head_sent = True
            self.conn.write(frame(HEADERS, END_HEADERS, self.id, _RESPONSE_HEAD + block))

    def send_message(self, message: bytes) -> None:
        if self.finished is not None:
            return
        if not self.head_sent:
            self.head_sent = True
            self.conn.write(frame(HEADERS, END_HEADERS, self.id, _RESPONSE_HEAD))
        self.pending += b"\x00" + struct.pack(">I", len(message)) + message
        self.conn.flush(self)

    def answer_plain(self, status: int, text: str) -> None:
        """A plain HTTP answer instead of a gRPC one, for a request this server does not carry (a
        REST client would read a gRPC status in HTTP 200 as success): the status, then `text`."""
        if self.finished is not None or self.head_sent:
            return
        body = text.encode()
        self.head_sent = True
        self.conn.write(
            frame(
                HEADERS,
                END_HEADERS,
                self.id,
                hpack_literal(b":status", str(status).encode())
                + hpack_literal(b"content-type", b"text/plain; charset=utf-8")
                + hpack_literal(b"content-length", str(len(body)).encode()),
            )
        )
        self.pending += body
        self.finished = END_BY_DATA
        self.conn.flush(self)

    def finish(self, code: int = 0, message: str = "", metadata: bytes = b"") -> None:
        """Trailers with the status and `metadata` (HPACK literals: trailing metadata)."""
        if self.finished is not None:
            return
        block = _trailers(code, message) + metadata
        self.finished = block if self.head_sent else _RESPONSE_HEAD + block
        self.head_sent = True
        self.conn.flush(self)


class Http2Connection(FrameReader):
    """One client connection's HTTP/2 state; `feed` it bytes, it writes through `write`."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        handlers: dict[str, Callable[[ServerStream], CallHandler]],
        max_message: int,
        fallback: Callable[[ServerStream], CallHandler] | None = None,
        max_header_list: int | None = None,
    ) -> None:
        """`fallback`: the handler of a path `handlers` does not name (else UNIMPLEMENTED).
        `max_header_list`: advertised as SETTINGS_MAX_HEADER_LIST_SIZE; a request whose headers
        are larger is answered RESOURCE_EXHAUSTED on its stream, and the connection serves on
        (without it, hpack's 64 KiB closes the connection)."""
        self._max_header_list = max_header_list
        # The most of a header block buffered, as received: past it the connection is closed.
        self._max_block = None if max_header_list is None else max_header_list * _HARD_HEADER_FACTOR
        self._write = write
        self._fallback = fallback
        self._going_away = False
        self._out: list[bytes] = []
        self.batching = False
        """Set while the connection's bytes are being read: writes wait for `flush_out` then."""
        self._flush_scheduled = False
        self._handlers = handlers
        self._max_message = max_message
        self._blocks = HeaderBlocks(self._max_block)
        self._streams: dict[int, tuple[ServerStream, CallHandler, bytearray]] = {}
        # Open streams whose queued answer waits for the peer's window to open.
        self._blocked: dict[int, ServerStream] = {}
        self._last_id = 0
        self._block_reader = HeaderBlockReader(self._max_block)
        self._peer_window = _DEFAULT_WINDOW
        self._peer_frame = _DEFAULT_FRAME
        self._send_window = _DEFAULT_WINDOW
        self._consumed = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        """Queue bytes for the socket: one send for everything a read produced (or, for answers
        written by a task, for everything one turn of the event loop produced), not one per frame."""
        self._out.append(data)
        if not self.batching and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_out)

    def flush_out(self) -> None:
        self._flush_scheduled = False
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._write(data)

    def start(self) -> None:
        """Our settings and the connection's larger receive window (after the initial SETTINGS)."""
        settings = struct.pack(">HI", _SETTINGS_MAX_CONCURRENT, MAX_CONCURRENT_STREAMS)
        if self._max_header_list is not None:
            settings += struct.pack(">HI", _SETTINGS_MAX_HEADER_LIST_SIZE, self._max_header_list)
        self.write(
            frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", CONNECTION_WINDOW - _DEFAULT_WINDOW))
        )

    # ----- receiving -----

    _write_frame = write

    def _stream_reset(self, stream_id: int, code: int) -> None:
        entry = self._streams.pop(stream_id, None)
        if entry is not None:
            entry[1].reset()

    def _goaway(self, last_id: int) -> None:
        self.closed = True

    def _settings(self, payload: memoryview) -> None:
        for at in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, at)
            if key == _SETTINGS_INITIAL_WINDOW_SIZE:
                delta, self._peer_window = value - self._peer_window, value
                for stream, _, _ in self._streams.values():
                    stream.window += delta
            elif key == _SETTINGS_MAX_FRAME_SIZE:
                self._peer_frame = value
        self._flush_all()

    def _headers_done(self, stream_id: int, flags: int, block: bytes) -> None:
        headers, size = self._blocks.decode_sized(block)  # always: the HPACK table's state
        entry = self._streams.get(stream_id)
        if entry is not None:  # trailers from the client: only their END_STREAM matters
            if flags & END_STREAM:
                self._client_done(stream_id, entry)
            return
        if stream_id <= self._last_id or not stream_id & 1:
            return  # a closed stream's late frames, or not a client stream: nothing to do
        self._last_id = stream_id
        stream = ServerStream(self, stream_id, self._peer_window)
        if len(self._streams) >= MAX_CONCURRENT_STREAMS:
            self.write(frame(RST_STREAM, 0, stream_id, struct.pack(">I", _REFUSED_STREAM)))
            return
        if self._going_away:  # after our GOAWAY: the client retries it on a new connection
            self.write(frame(RST_STREAM, 0, stream_id, struct.pack(">I", _REFUSED_STREAM)))
            return
        stream.headers = headers
        if self._max_header_list is not None and size > self._max_header_list:
            # As gRPC servers answer metadata over their limit: on the stream, trailers-only.
            self._refuse(
                stream,
                flags,
                RESOURCE_EXHAUSTED,
                f"request headers of {size} bytes exceed the limit of {self._max_header_list} bytes",
            )
            return
        # A fallback alone (the main port's front door) needs no look at the path here.
        factory = self._handlers.get(_path(headers), self._fallback) if self._handlers else self._fallback
        if factory is None:
            path = _path(headers)
            self._refuse(stream, flags, UNIMPLEMENTED, f"{path}: served on a connection of its own")
            return
        handler = factory(stream)
        self._streams[stream_id] = (stream, handler, bytearray())
        if flags & END_STREAM:
            self._client_done(stream_id, self._streams[stream_id])

    def _refuse(self, stream: ServerStream, flags: int, code: int, message: str) -> None:
        """Answer a stream at once, trailers-only; what the client still sends on it is dropped."""
        stream.client_done = True  # nothing of it is kept: its late frames are dropped
        stream.finish(code, message)
        if not flags & END_STREAM:
            self.write(frame(RST_STREAM, 0, stream.id, struct.pack(">I", _NO_ERROR)))

    def _data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        size = len(payload)
        entry = self._streams.get(stream_id)
        if entry is None:
            return
        stream, handler, buffer = entry
        stream.received += size
        if stream.received >= _STREAM_REFILL and not flags & END_STREAM and stream.held <= _HOLD_LIMIT:
            self.write(frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", stream.received)))
            stream.received = 0
        buffer += payload
        while len(buffer) >= 5:
            length = int.from_bytes(buffer[1:5], "big")
            if length > self._max_message:
                self._abort(stream_id, entry, "too large")
                return
            if len(buffer) < 5 + length:
                break
            message: bytes | None = bytes(buffer[5 : 5 + length])
            if buffer[0]:
                message = self._decompressed(stream, bytes(buffer[5 : 5 + length]))
            if message is None:
                self._abort(stream_id, entry, "compressed")
                return
            del buffer[: 5 + length]
            if stream.holding:
                stream.held += 5 + len(message)
            handler.received(message)
            if stream_id not in self._streams:
                return
        if flags & END_STREAM:
            self._client_done(stream_id, entry)

    def _decompressed(self, stream: ServerStream, message: bytes) -> bytes | None:
        """A compressed message in the stream's `grpc-encoding` (gzip or deflate, as gRPC clients
        offer), or None: another encoding, a broken stream, or larger than the limit once inflated."""
        encoding = next((value for name, value in stream.headers if name == "grpc-encoding"), "")
        wbits = _WBITS.get(encoding)
        if wbits is None:
            return None
        inflater = zlib.decompressobj(wbits)
        try:
            plain = inflater.decompress(message, self._max_message + 1)
        except zlib.error:
            return None
        return plain if len(plain) <= self._max_message and inflater.eof else None

    def _abort(self, stream_id: int, entry: tuple[ServerStream, CallHandler, bytearray], why: str) -> None:
        stream, handler, _ = entry
        handler.reset()
        if why == "compressed":
            stream.finish(UNIMPLEMENTED, "a message compressed in an encoding not accepted here")
        else:
            stream.finish(RESOURCE_EXHAUSTED, f"a message larger than {self._max_message} bytes")

    def _client_done(self, stream_id: int, entry: tuple[ServerStream, CallHandler, bytearray]) -> None:
        stream, handler, _ = entry
        stream.client_done = True
        if stream.finished is None:
            handler.half_closed()
        elif not stream.pending:
            self._streams.pop(stream_id, None)

    def consumed(self, stream: ServerStream, size: int) -> None:
        """A holding handler used `size` bytes of what it received: refill the window for them."""
        if stream.finished is not None:
            return
        stream.held -= size
        if stream.received >= _STREAM_REFILL and not stream.client_done and stream.held <= _HOLD_LIMIT:
            self.write(frame(WINDOW_UPDATE, 0, stream.id, struct.pack(">I", stream.received)))
            stream.received = 0

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def go_away(self) -> None:
        """Take no new stream (GOAWAY naming the last one taken); those open go on."""
        if not self._going_away:
            self._going_away = True
            self.write(frame(GOAWAY, 0, 0, struct.pack(">II", self._last_id, _NO_ERROR)))

    # ----- sending -----

    def _window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self._send_window += increment
            self._flush_all()
            return
        entry = self._streams.get(stream_id)
        if entry is not None:
            entry[0].window += increment
            self.flush(entry[0])

    def _flush_all(self) -> None:
        """Flush the streams a window held back (none, nearly always: a client's connection-level
        WINDOW_UPDATE then costs nothing per open stream)."""
        if not self._blocked:
            return
        streams = self._streams
        for stream in list(self._blocked.values()):
            if stream.id in streams:
                self.flush(stream)
            else:  # reset meanwhile: nothing more of it goes out
                del self._blocked[stream.id]

    def flush(self, stream: ServerStream) -> None:
        """Send what the windows allow of the stream's answer, then its trailers."""
        pending = stream.pending
        while pending:
            size = min(len(pending), self._send_window, stream.window, self._peer_frame)
            if size <= 0:
                self._blocked[stream.id] = stream
                return
            self.write(frame(DATA, 0, stream.id, bytes(pending[:size])))
            del pending[:size]
            self._send_window -= size
            stream.window -= size
        if self._blocked:
            self._blocked.pop(stream.id, None)
        if stream.drained is not None:
            stream.drained()
        trailers = stream.finished
        if not trailers:  # not finished, or its trailers already sent
            return
        if trailers is END_BY_DATA:  # a plain answer ends with its body, no trailers
            self.write(frame(DATA, END_STREAM, stream.id, b""))
        else:
            self.write(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, trailers))
        stream.finished = b""
        entry = self._streams.pop(stream.id, None)
        if not stream.client_done and entry is not None:
            # The client may still be sending: the stream is over for both sides (RFC 9113, 8.1).
            self.write(frame(RST_STREAM, 0, stream.id, struct.pack(">I", _NO_ERROR)))

    def lost(self) -> None:
        """The connection is gone: every open call is reset."""
        self.closed = True
        self._blocked.clear()
        streams, self._streams = self._streams, {}
        for _, handler, _ in streams.values():
            handler.reset()

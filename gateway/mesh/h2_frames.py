"""HTTP/2 framing as both own transports read and write it: the server (`http2.py`) and the
upstream client (`gateway/grpc/h2_connection.py`). Frame types and flags, a frame's head, bytes
split into whole frames, and a header block gathered from its HEADERS and CONTINUATION frames
(RFC 9113, 4.3 and 6.2: nothing else may come between them, on any stream)."""

from __future__ import annotations

import struct
from collections.abc import Callable

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# A frame's 9-byte head: its 24-bit length (as a byte and 16 bits), type, flags and stream id (whose
# top bit is reserved).
FRAME_HEAD = struct.Struct(">BHBBI")
_HEAD = FRAME_HEAD.size

# The connection's receive window on both sides: raised to 16 MiB at once, refilled once 1 MiB of
# it is consumed (one WINDOW_UPDATE per few messages of any size).
CONNECTION_WINDOW = 16 << 20
CONNECTION_REFILL = 1 << 20
_INCREMENT = struct.Struct(">I")

FrameHandler = Callable[[int, int, int, memoryview], None]
"""Told each frame: its type, flags, stream id (reserved bit cleared) and payload."""


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return FRAME_HEAD.pack(size >> 16, size & 0xFFFF, kind, flags, stream) + payload


def split_frames(data: bytes, handle: FrameHandler) -> int:
    """Hands each whole frame in `data` to `handle`, in order; returns where the incomplete rest
    begins. The payloads are views of `data`, which is immutable: slicing them copies nothing."""
    view = memoryview(data)
    offset, end = 0, len(data)
    while end - offset >= _HEAD:
        high, low, kind, flags, stream_id = FRAME_HEAD.unpack_from(data, offset)
        start = offset + _HEAD
        stop = start + (high << 16 | low)
        if stop > end:
            break
        offset = stop
        handle(kind, flags, stream_id & 0x7FFFFFFF, view[start:stop])
    return offset


class HeaderBlockReader:
    """Gathers one header block at a time. `headers` and `continuation` take their frames and
    return `(stream id, the HEADERS frame's flags, block)` once END_HEADERS ends it, else None; a
    block in one HEADERS frame, nearly every one, is never copied into a buffer. `open` is true
    between a block's first frame and its last, when any other frame breaks the protocol."""

    __slots__ = ("_block", "_flags", "_max_size", "_stream_id", "open")

    def __init__(self, max_size: int | None = None) -> None:
        """`max_size`: the most of a block buffered, as received, before `ConnectionError`."""
        self._max_size = max_size
        self._block = bytearray()
        self._stream_id = 0
        self._flags = 0
        self.open = False

    def headers(self, flags: int, stream_id: int, payload: memoryview) -> tuple[int, int, bytes] | None:
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        self._check(len(payload))
        if flags & END_HEADERS:
            return stream_id, flags, bytes(payload)
        self._block = bytearray(payload)
        self._stream_id, self._flags, self.open = stream_id, flags, True
        return None

    def continuation(self, flags: int, stream_id: int, payload: memoryview) -> tuple[int, int, bytes] | None:
        if not self.open or self._stream_id != stream_id:
            raise ConnectionError("CONTINUATION without its HEADERS")
        block = self._block
        block += payload
        self._check(len(block))
        if not flags & END_HEADERS:
            return None
        self.open = False
        self._block = bytearray()
        return stream_id, self._flags, bytes(block)

    def _check(self, size: int) -> None:
        if self._max_size is not None and size > self._max_size:
            raise ConnectionError(f"a header block over {self._max_size} bytes")


class FrameReader:
    """What both transports do with each frame read, in `feed_frame`: frames told apart by type, a
    header block gathered (`_block_reader`, set by the subclass), SETTINGS and PING acknowledged
    through `_write_frame`, WINDOW_UPDATE's increment and GOAWAY's last stream id read out; frame
    types it does not know are ignored, as RFC 9113 allows; DATA unpadded and counted against the
    connection's receive window (padding too, its share given back to the stream at once), refilled as
    it is consumed. What each frame means is the side's own (the methods below that raise)."""

    _block_reader: HeaderBlockReader
    _consumed: int
    """DATA bytes received since the connection's window was last refilled."""

    def feed_frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if self._block_reader.open and kind != CONTINUATION:
            raise ConnectionError("a header block interrupted")
        if kind == DATA:
            # Flow control counts the whole payload, padding included (RFC 9113, 6.9.1): the padding
            # carries nothing, so its share goes back to the stream's window at once.
            consumed = self._consumed + len(payload)
            if flags & PADDED:
                padding = payload[0] + 1 if payload else 1
                if padding > len(payload):
                    raise ConnectionError("DATA padding longer than its frame")
                payload = payload[1 : len(payload) - padding + 1]
                if not flags & END_STREAM:
                    self._write_frame(frame(WINDOW_UPDATE, 0, stream_id, _INCREMENT.pack(padding)))
            if consumed >= CONNECTION_REFILL:
                self._write_frame(frame(WINDOW_UPDATE, 0, 0, _INCREMENT.pack(consumed)))
                consumed = 0
            self._consumed = consumed
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            block = self._block_reader.headers(flags, stream_id, payload)
            if block is not None:
                self._headers_done(*block)
        elif kind == CONTINUATION:
            block = self._block_reader.continuation(flags, stream_id, payload)
            if block is not None:
                self._headers_done(*block)
        elif kind == RST_STREAM:
            self._stream_reset(stream_id, int.from_bytes(payload, "big"))
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
                self._write_frame(frame(SETTINGS, ACK, 0))
        elif kind == PING:
            if not flags & ACK:
                self._write_frame(frame(PING, ACK, 0, bytes(payload)))
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, int.from_bytes(payload, "big") & 0x7FFFFFFF)
        elif kind == GOAWAY:
            self._goaway(int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)

    def _write_frame(self, data: bytes) -> None:
        raise NotImplementedError

    def _data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        """A DATA frame's payload, its padding dropped."""
        raise NotImplementedError

    def _headers_done(self, stream_id: int, flags: int, block: bytes) -> None:
        raise NotImplementedError

    def _stream_reset(self, stream_id: int, code: int) -> None:
        raise NotImplementedError

    def _settings(self, payload: memoryview) -> None:
        raise NotImplementedError

    def _window_update(self, stream_id: int, increment: int) -> None:
        raise NotImplementedError

    def _goaway(self, last_id: int) -> None:
        raise NotImplementedError

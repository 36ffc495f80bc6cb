"""A gRPC load generator that writes HTTP/2 frames itself: one connection, many streams, as Envoy.

The grpcio client spends about as much CPU on a call as a Python server does answering it, so on a
two-CPU machine it cannot load one server core. This one pre-encodes everything it sends: the
request headers (HPACK literals, no dynamic table, so nothing to track), and per stream a HEADERS
frame and a DATA frame carrying one gRPC message with END_STREAM, which is what Envoy's ext_proc
filter sends for a header-only request (one `ProcessingRequest`, then the end of the stream). It
reads only frame heads: a stream's first DATA frame is its answer (the latency is measured to it),
its HEADERS frame with END_STREAM its end. A stream that ends without a DATA frame, or is reset,
is an error. The answers are not decoded here; `check` hands every `sample`-th one's message to the
caller, which decodes it and says whether it is right.

    closed loop:  `concurrency` streams in flight, a new one as each ends
    paced:        a new stream every 1/rate s, whatever is in flight (open loop)
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
# The largest flow-control window HTTP/2 allows: the answers never wait on this client.
_MAX_WINDOW = (1 << 31) - 1
# The window every connection starts with (RFC 9113, 6.9.2).
_DEFAULT_WINDOW = 65535
# Received answer bytes after which the connection window is topped up again.
_REFILL_AFTER = 1 << 30
_SETTINGS_INITIAL_WINDOW_SIZE = 0x4


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing, new name, no Huffman (RFC 7541, 6.2.2)."""
    out = bytearray(b"\x00")
    for text in (name.encode("latin-1"), value.encode("latin-1")):
        if len(text) > 126:  # one 7-bit prefix byte is enough for the fixed headers sent here
            raise ValueError("header name or value too long for this encoder")
        out.append(len(text))
        out += text
    return bytes(out)


@dataclass(slots=True)
class LoadRun:
    """What one run measured: streams answered, errors, and each answer's latency in seconds."""

    answered: int = 0
    errors: int = 0
    wrong: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000 if ordered else 0.0


def _header_block(path: str, authority: str) -> bytes:
    return b"".join(
        _literal(name, value)
        for name, value in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )


class _Connection(asyncio.Protocol):
    def __init__(
        self, path: str, authority: str, messages: Sequence[bytes], opening: str | None = None
    ) -> None:
        block = _header_block(path, authority)
        self._opening = None if opening is None else _header_block(opening, authority)
        head = struct.pack(">I", len(block))[1:] + bytes((_HEADERS, _END_HEADERS))
        self._head = head
        self._block = block
        self._bodies = [b"\x00" + struct.pack(">I", len(m)) + m for m in messages]
        self._data_head = [struct.pack(">I", len(b))[1:] + bytes((_DATA, _END_STREAM)) for b in self._bodies]
        self._next_id = 1
        self._count = 0
        self._sent: dict[int, float] = {}
        self._answered: set[int] = set()
        self._buffer = b""
        self._received = 0
        self._send_window = _DEFAULT_WINDOW
        self._waiting: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.run = LoadRun()
        self.on_end: Callable[[], None] = lambda: None
        self.sample = 0
        self.check: Callable[[bytes], bool] = lambda message: True
        self.closed = asyncio.get_running_loop().create_future()

    # ----- sending -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        settings = struct.pack(">HI", _SETTINGS_INITIAL_WINDOW_SIZE, _MAX_WINDOW)
        window = struct.pack(">I", _MAX_WINDOW - _DEFAULT_WINDOW)
        transport.write(_PREFACE + _frame(_SETTINGS, 0, 0, settings) + _frame(_WINDOW_UPDATE, 0, 0, window))
        if self._opening is not None:  # a first call left open: it chooses the server's transport
            transport.write(_frame(_HEADERS, _END_HEADERS, 1, self._opening))
            self._next_id = 3

    def open_stream(self) -> None:
        """One request: HEADERS, then DATA with the message and END_STREAM."""
        stream = self._next_id
        self._next_id += 2
        index = self._count % len(self._bodies)
        self._count += 1
        ids = struct.pack(">I", stream)
        body = self._bodies[index]
        data = self._data_head[index] + ids + body
        self._sent[stream] = time.perf_counter()
        if self._send_window < len(body) or self._waiting:
            self._waiting.append(self._head + ids + self._block)
            self._waiting.append(data)
            return
        self._send_window -= len(body)
        assert self.transport is not None
        self.transport.write(self._head + ids + self._block + data)

    def _flush_waiting(self) -> None:
        assert self.transport is not None
        while self._waiting:
            headers, data = self._waiting[0], self._waiting[1]
            size = len(data) - 9
            if size > self._send_window:
                return
            self._send_window -= size
            del self._waiting[:2]
            self.transport.write(headers + data)

    # ----- receiving -----

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        end = len(buffer)
        now = time.perf_counter()
        while end - offset >= 9:
            length = int.from_bytes(buffer[offset : offset + 3], "big")
            if end - offset < 9 + length:
                break
            kind = buffer[offset + 3]
            flags = buffer[offset + 4]
            stream = int.from_bytes(buffer[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            payload_at = offset + 9
            offset = payload_at + length
            if kind == _DATA:
                self._received += length
                if stream not in self._answered and stream in self._sent:
                    self._answered.add(stream)
                    self.run.latencies.append(now - self._sent[stream])
                    self.run.answered += 1
                    sampled = self.sample and self.run.answered % self.sample == 0
                    if sampled and not self.check(buffer[payload_at + 5 : offset]):
                        self.run.wrong += 1
                if flags & _END_STREAM:
                    self._ended(stream)
            elif kind == _HEADERS:
                if flags & _END_STREAM:
                    self._ended(stream)
            elif kind == _RST_STREAM:
                self._ended(stream)
            elif kind == _SETTINGS:
                if not flags & _ACK:
                    assert self.transport is not None
                    self.transport.write(_frame(_SETTINGS, _ACK, 0, b""))
            elif kind == _PING:
                if not flags & _ACK:
                    assert self.transport is not None
                    self.transport.write(_frame(_PING, _ACK, 0, buffer[payload_at:offset]))
            elif kind == _WINDOW_UPDATE and stream == 0:
                self._send_window += int.from_bytes(buffer[payload_at:offset], "big") & 0x7FFFFFFF
                self._flush_waiting()
            elif kind == _GOAWAY:
                assert self.transport is not None
                self.transport.close()
        self._buffer = buffer[offset:]
        if self._received > _REFILL_AFTER:
            assert self.transport is not None
            self.transport.write(_frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", self._received)))
            self._received = 0

    def _ended(self, stream: int) -> None:
        if self._sent.pop(stream, None) is None:
            return
        if stream in self._answered:
            self._answered.discard(stream)
        else:
            self.run.errors += 1
        self.on_end()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def in_flight(self) -> int:
        return len(self._sent)


async def _connect(
    host: str, port: int, path: str, messages: Sequence[bytes], opening: str | None
) -> _Connection:
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: _Connection(path, f"{host}:{port}", messages, opening), host, port
    )
    return connection


async def closed_loop(
    host: str,
    port: int,
    path: str,
    messages: Sequence[bytes],
    *,
    seconds: float,
    concurrency: int,
    sample: int = 0,
    check: Callable[[bytes], bool] = lambda message: True,
    opening: str | None = None,
) -> LoadRun:
    """`concurrency` streams in flight on one connection for `seconds`; answers per second.
    `opening`: a method path called first, and left open, on stream 1."""
    connection = await _connect(host, port, path, messages, opening)
    connection.sample, connection.check = sample, check
    stop = time.perf_counter() + seconds
    finished = asyncio.get_running_loop().create_future()

    def refill() -> None:
        if time.perf_counter() < stop:
            connection.open_stream()
        elif connection.in_flight == 0 and not finished.done():
            finished.set_result(None)

    connection.on_end = refill
    began = time.perf_counter()
    for _ in range(concurrency):
        connection.open_stream()
    try:
        await asyncio.wait_for(finished, seconds + 10)
    finally:
        connection.run.seconds = time.perf_counter() - began
        assert connection.transport is not None
        connection.transport.close()
    return connection.run


async def paced(
    host: str,
    port: int,
    path: str,
    messages: Sequence[bytes],
    *,
    seconds: float,
    rate: float,
    sample: int = 0,
    check: Callable[[bytes], bool] = lambda message: True,
    opening: str | None = None,
) -> LoadRun:
    """A new stream every 1/`rate` s for `seconds`, whatever is in flight; the latency of each."""
    connection = await _connect(host, port, path, messages, opening)
    connection.sample, connection.check = sample, check
    total = int(seconds * rate)
    finished = asyncio.get_running_loop().create_future()
    opened = 0

    def ended() -> None:
        if opened == total and connection.in_flight == 0 and not finished.done():
            finished.set_result(None)

    connection.on_end = ended
    began = time.perf_counter()
    while opened < total:
        due = min(total, int((time.perf_counter() - began) * rate) + 1)
        while opened < due:
            connection.open_stream()
            opened += 1
        await asyncio.sleep(max(0.0, began + opened / rate - time.perf_counter()))
    try:
        await asyncio.wait_for(finished, 10)
    finally:
        connection.run.seconds = time.perf_counter() - began
        assert connection.transport is not None
        connection.transport.close()
    return connection.run

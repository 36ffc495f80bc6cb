"""The access log: one JSON line per request, cheap enough to leave on.

The request path pays for one dict of values it already holds and one ``orjson.dumps`` (about 2 µs
together); the line joins an in-memory buffer. Full buffers, the housekeeping timer (every half
second) and shutdown hand the buffer to a writer thread as one bytes object, and only that thread
touches the file, so a slow disk never stalls the event loop. SIGUSR1 (see ``reopen``) makes the
thread close and reopen the file after logrotate has moved it away.

A file is opened with O_APPEND and written in whole buffers of whole lines, so several gateway
processes can share one file without interleaving lines.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import orjson

from gateway.config.models.listen import ACCESS_LOG_FIELDS as FIELDS
from gateway.core.context import RequestContext

# Handed to the writer thread past this size: one write() of 64 KiB costs about what a 4 KiB one
# does, and at 10,000 requests a second (~250 bytes a line) it fills about 25 times a second.
BUFFER_BYTES = 65536
# Buffers waiting for the writer thread before new ones are dropped: 1,024 x 64 KiB = 64 MiB of
# memory at most while a disk stalls, rather than growing until the process is killed.
MAX_PENDING_BUFFERS = 1024
# How long close() waits for the writer thread to write what is left: a healthy disk takes
# milliseconds; past this the disk is hung and shutdown must go on.
CLOSE_TIMEOUT_S = 5.0
# Told to the writer thread through its queue.
_REOPEN = b"reopen"
_STOP = b"stop"


def _line_values(ctx: RequestContext, total: float) -> dict[str, Any]:
    return {
        "ts": round(time.time(), 6),
        "request_id": ctx.request_id,
        "method": ctx.method,
        "path": ctx.path,
        "route": ctx.route,
        "cluster": ctx.cluster,
        "endpoint": ctx.endpoint,
        "status": ctx.status,
        "duration_ms": round(total * 1000, 3),
        "upstream_ms": round(ctx.upstream_latency * 1000, 3),
        "bytes_in": ctx.bytes_in,
        "bytes_out": ctx.bytes_out,
        "retries": ctx.retries,
        "client": ctx.client_ip,
        "experiment": ctx.experiment,
        "arm": ctx.arm,
        "error": ctx.error,
    }


def _chosen(fields: Sequence[str]) -> Callable[[RequestContext, float], dict[str, Any]]:
    """The builder of a line with only ``fields``, decided once: all fields need no filtering."""
    if tuple(fields) == FIELDS:
        return _line_values
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown access-log fields: {', '.join(sorted(unknown))}")
    names = tuple(fields)

    def values(ctx: RequestContext, total: float) -> dict[str, Any]:
        every = _line_values(ctx, total)
        return {name: every[name] for name in names}

    return values


class _Sink:
    """Where the writer thread puts bytes: a file opened for appending, or a standard stream."""

    def __init__(self, destination: str) -> None:
        self._path: str | None = None
        self._stream: IO[bytes] | None = None
        self._fd = -1
        if destination == "stdout":
            self._stream = sys.stdout.buffer
        elif destination == "stderr":
            self._stream = sys.stderr.buffer
        else:
            self._path = destination
            self._fd = self._open()

    def _open(self) -> int:
        assert self._path is not None
        # 0o644: an access log is read by the operator's tools, written only by the gateway.
        return os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, data: bytes) -> None:
        if self._stream is not None:
            self._stream.write(data)
            self._stream.flush()
            return
        # The call stays out of the slice: compiled, a slice's bound may be evaluated twice.
        written = os.write(self._fd, data)
        while written < len(data):
            written += os.write(self._fd, memoryview(data)[written:])

    def reopen(self) -> None:
        if self._path is not None:
            fd, self._fd = self._fd, self._open()
            os.close(fd)

    def close(self) -> None:
        if self._path is not None and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class AccessLog:
    """Builds each request's line on the event loop; a writer thread alone writes them.

    ``sample`` (0 < sample <= 1) keeps that share of the lines of answered requests; a status of 500
    or more is always logged, since those are the lines an operator looks for.
    """

    def __init__(self, destination: str, sample: float = 1.0, fields: Sequence[str] = FIELDS) -> None:
        if not 0 < sample <= 1:
            raise ValueError(f"sample must be in (0, 1], got {sample}")
        self._values = _chosen(fields)
        self._sample = sample
        self._sink = _Sink(destination)
        self._chunks: list[bytes] = []
        self._size = 0
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self.dropped_buffers = 0
        """Buffers thrown away because the disk fell MAX_PENDING_BUFFERS behind."""

    def log(self, ctx: RequestContext, total: float) -> None:
        if self._sample < 1.0 and ctx.status < 500 and random.random() >= self._sample:
            return
        line = orjson.dumps(self._values(ctx, total), option=orjson.OPT_APPEND_NEWLINE)
        self._chunks.append(line)
        self._size += len(line)
        if self._size >= BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered lines to the writer thread (called by size, by timer and on shutdown)."""
        if not self._chunks:
            return
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._queue.qsize() >= MAX_PENDING_BUFFERS:
            self.dropped_buffers += 1
            return
        self._send(data)

    def reopen(self) -> None:
        """After log rotation (SIGUSR1): write what is buffered, then close and reopen the file."""
        self.flush()
        self._send(_REOPEN)

    def close(self) -> None:
        """Write everything buffered and stop the writer thread (it is given CLOSE_TIMEOUT_S)."""
        self.flush()
        thread = self._writer
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(CLOSE_TIMEOUT_S)
            self._writer = None
        if thread is None or not thread.is_alive():
            self._sink.close()

    def _send(self, item: bytes) -> None:
        if self._writer is None:
            # Started on the first hand-off, not in __init__: a gateway that never logs has no thread.
            self._writer = threading.Thread(target=self._write_forever, name="access-log", daemon=True)
            self._writer.start()
        self._queue.put(item)

    def _write_forever(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            with contextlib.suppress(OSError):  # a full or failing disk must not kill the writer
                if item is _REOPEN:
                    self._sink.reopen()
                else:
                    self._sink.write(item)

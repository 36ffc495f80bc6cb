"""One gRPC call of the main port served by the gateway's own HTTP/2 transport, through the relay.

The relay (`relay.py`) was written against grpcio's servicer context; `CallContext` is that
context for a call that arrived on `gateway/mesh/http2.py`'s transport: the request's metadata,
peer, certificate subject and deadline, and the answer's initial metadata, trailing metadata and
status, written to the call's `ServerStream`. So both transports share one decision path: routing,
filters, experiments, cache, validation, batching, metrics and the access log are the relay's.

`NativeCall` is the stream's handler: a unary OIP v2 method runs `Relay.unary` once its message
and half-close have arrived; any other method runs `Relay.stream` at once, messages handed over as
they come (the stream's receive window refilled only as the relay takes them, so a slow upstream
makes the client wait) and answers written as they come (the relay waits while more than
`_HIGH_WATER` bytes of them are queued for a slow client).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, cast

import grpc

from gateway.grpc.call import UNARY_METHODS
from gateway.grpc.metadata import Metadata
from gateway.mesh.hpack_blocks import hpack_literal
from gateway.mesh.http2 import INTERNAL, ServerStream

if TYPE_CHECKING:
    from gateway.grpc.relay import Relay
    from gateway.grpc.splice import Origin

log = logging.getLogger("turnout.grpc")

# Answer bytes queued for a slow client before a streaming call stops taking the upstream's next
# message: a few messages' worth, as grpcio's own write buffering allows.
_HIGH_WATER = 1 << 20
# grpc-timeout units (gRPC's HTTP/2 protocol spec) in seconds.
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
# A status code's number, looked up once: an enum member's `value` is a descriptor call each time.
_NUMBERS = {code: code.value[0] for code in grpc.StatusCode}


def metadata_block(pairs: Iterable[tuple[str, str | bytes]]) -> bytes:
    """Metadata as HPACK literals; binary values base64-encoded, as gRPC sends them."""
    block = b""
    for key, value in pairs:
        raw = base64.b64encode(value).rstrip(b"=") if isinstance(value, bytes) else value.encode()
        block += hpack_literal(key.encode(), raw)
    return block


@dataclass(frozen=True, slots=True)
class CallHead:
    """What a call's request headers say, read in one pass: its method path, content-type,
    `grpc-timeout` in seconds, and its metadata as grpcio gives it (no pseudo-headers, `te`,
    `content-type` or `grpc-` keys, `-bin` values decoded)."""

    path: str
    content_type: str
    timeout: float | None
    metadata: Metadata


def call_head(headers: list[tuple[str, str]]) -> CallHead:
    path = content_type = timeout = ""
    pairs: list[tuple[str, str | bytes]] = []
    for key, value in headers:
        if key[:1] == ":":
            if key == ":path" and not path:
                path = value
        elif key.startswith("grpc-"):
            if key == "grpc-timeout" and not timeout:
                timeout = value
        elif key == "content-type":
            content_type = content_type or value
        elif key == "te":
            pass
        elif key.endswith("-bin"):
            pairs.append((key, base64.b64decode(value + "=" * (-len(value) % 4))))
        else:
            pairs.append((key, value))
    return CallHead(path, content_type, timeout_seconds(timeout), tuple(pairs))


def timeout_seconds(value: str) -> float | None:
    """A `grpc-timeout` value in seconds; None when absent or malformed."""
    unit = _UNITS.get(value[-1:])
    if unit is None or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * unit


class CallContext:
    """What the relay asks of grpcio's servicer context, for a call served here."""

    __slots__ = ("_auth", "_deadline", "_metadata", "_peer", "_stream", "code", "details", "trailing")

    def __init__(self, stream: ServerStream, origin: Origin, head: CallHead) -> None:
        self._stream = stream
        self._metadata = head.metadata
        timeout = head.timeout
        self._peer = origin.peer
        self._auth = origin.auth
        self._deadline = monotonic() + timeout if timeout is not None else None
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.trailing: Metadata = ()

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return self._auth

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - monotonic())

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        """As grpcio's: ends the call with this status (the handler's `AbortError`)."""
        self.code, self.details = code, details
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    async def send_initial_metadata(self, pairs: Metadata) -> None:
        self._stream.send_head(metadata_block(pairs))

    def set_trailing_metadata(self, pairs: Metadata) -> None:
        self.trailing = tuple(pairs)


class NativeCall:
    """The `CallHandler` of one stream: the relay's unary or stream handler on a task."""

    __slots__ = (
        "_context",
        "_drained",
        "_message",
        "_path",
        "_queue",
        "_relay",
        "_stream",
        "_task",
        "_timer",
    )

    def __init__(self, relay: Relay, stream: ServerStream, origin: Origin, head: CallHead) -> None:
        self._relay = relay
        self._stream = stream
        self._path = head.path
        timeout = head.timeout
        self._context = CallContext(stream, origin, head)
        self._message: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        # The client's deadline is the gateway's too: the relay's work stops when it passes.
        self._timer = loop.call_later(timeout, self._expired) if timeout is not None else None
        self._queue: asyncio.Queue[bytes | None] | None = None
        if self._path not in UNARY_METHODS:
            self._queue = asyncio.Queue()
            stream.holding = True
            stream.drained = self._on_drained
            self._task = loop.create_task(self._run_stream())

    # ----- what the transport tells -----

    def received(self, message: bytes) -> None:
        if self._queue is not None:
            self._queue.put_nowait(message)
        elif self._message is None:
            self._message = message
        else:
            self._end(INTERNAL, "more than one request message for a unary method")

    def half_closed(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)
        elif self._message is None:
            self._end(INTERNAL, "no request message for a unary method")
        elif self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run_unary(self._message))

    def reset(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def _expired(self) -> None:
        self._timer = None
        self._end(DEADLINE_EXCEEDED, "Deadline Exceeded")

    def _end(self, code: int, details: str) -> None:
        self.reset()
        self._stream.finish(code, details)

    # ----- the relay -----

    async def _run_unary(self, message: bytes) -> None:
        context = self._context
        try:
            reply = await self._relay.unary(self._path, message, cast(grpc.aio.ServicerContext, context))
        except grpc.aio.AbortError:
            self._finish()
            return
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("a gRPC call on the main port failed")
            self._end(INTERNAL, "the gateway failed this call")
            return
        self._stream.send_message(reply)
        self._finish()

    async def _run_stream(self) -> None:
        context = self._context
        replies = cast(
            AsyncGenerator[bytes, None],
            self._relay.stream(self._path, self._requests(), cast(grpc.aio.ServicerContext, context)),
        )
        stream = self._stream
        try:
            async with contextlib.aclosing(replies):
                async for reply in replies:
                    stream.send_message(reply)
                    if len(stream.pending) > _HIGH_WATER:
                        self._drained = asyncio.get_running_loop().create_future()
                        await self._drained
        except grpc.aio.AbortError:
            pass
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("a gRPC call on the main port failed")
            self._end(INTERNAL, "the gateway failed this call")
            return
        self._finish()

    async def _requests(self) -> AsyncIterator[bytes]:
        queue = self._queue
        assert queue is not None
        while (message := await queue.get()) is not None:
            self._stream.consume(len(message) + 5)
            yield message

    def _on_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done() and len(self._stream.pending) <= _HIGH_WATER // 2:
            drained.set_result(None)

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        context = self._context
        self._stream.finish(_NUMBERS[context.code], context.details, metadata_block(context.trailing))

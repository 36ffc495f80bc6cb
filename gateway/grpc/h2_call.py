"""One unary call on the own HTTP/2 client: its stream's state, and how its answer reads.

`UnaryStream` is what a connection (`h2_connection.py`) keeps per stream; `reply_or_error` turns
a finished stream and its trailers (or a trailers-only answer) into the call's outcome, without
any I/O. `CallError` and `UnaryReply` are what a caller of `H2Clients.unary` sees.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from urllib.parse import unquote

import grpc

from gateway.grpc.metadata import Metadata

_CODES = {code.value[0]: code for code in grpc.StatusCode}
# An answer that is no gRPC server's (a proxy's error page, a plain HTTP server): its HTTP status as
# gRPC's HTTP-to-gRPC mapping has it, so a 429 or 503 on the way is UNAVAILABLE and retried
# elsewhere like a server that is down; any other status is UNKNOWN.
_HTTP_CODES = {
    "400": grpc.StatusCode.INTERNAL,
    "401": grpc.StatusCode.UNAUTHENTICATED,
    "403": grpc.StatusCode.PERMISSION_DENIED,
    "404": grpc.StatusCode.UNIMPLEMENTED,
    "429": grpc.StatusCode.UNAVAILABLE,
    "502": grpc.StatusCode.UNAVAILABLE,
    "503": grpc.StatusCode.UNAVAILABLE,
    "504": grpc.StatusCode.UNAVAILABLE,
}


def http_status_error(status: str) -> CallError:
    """The error for an answer whose HTTP status is not 200: no gRPC server answered."""
    code = _HTTP_CODES.get(status, grpc.StatusCode.UNKNOWN)
    return CallError(code, f"the upstream answered HTTP status {status or 'none'}")


class CallError(Exception):
    """A call that did not end OK: its status code, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailing = trailing


@dataclass(frozen=True, slots=True)
class UnaryReply:
    message: bytes
    initial: Metadata
    trailing: Metadata


class UnaryStream:
    """One stream: the request's unsent bytes, then the answer as it arrives."""

    __slots__ = ("data", "future", "id", "initial", "pending", "received", "timer", "window")

    def __init__(self, stream_id: int, future: asyncio.Future[UnaryReply], window: int) -> None:
        self.id = stream_id
        self.future = future
        self.window = window
        self.pending = b""
        self.initial: AnswerHead | None = None
        self.data = bytearray()
        self.received = 0
        self.timer: asyncio.TimerHandle | None = None


def timeout_header(seconds: float) -> bytes:
    """`grpc-timeout` (at most 8 digits and a unit, gRPC's HTTP/2 protocol spec), rounded up."""
    micros = max(1, int(seconds * 1_000_000) + 1)
    if micros < 100_000_000:
        return b"%du" % micros
    millis = micros // 1000 + 1
    return b"%dm" % millis if millis < 100_000_000 else b"%dS" % min(99_999_999, millis // 1000 + 1)


@dataclass(frozen=True, slots=True)
class AnswerHead:
    """What one header block of an answer (its head, or its trailers) says, read in one pass."""

    status: str
    """`:status`; empty in trailers."""
    code: grpc.StatusCode | None
    """`grpc-status`; None when absent."""
    details: str
    """`grpc-message`, percent-decoded."""
    metadata: Metadata
    """As grpcio gives it: no pseudo-headers, content-type or `grpc-` keys, `-bin` values
    base64-decoded to bytes."""


def answer_head(headers: list[tuple[str, str]]) -> AnswerHead:
    status = details = ""
    code: grpc.StatusCode | None = None
    pairs: list[tuple[str, str | bytes]] = []
    for key, value in headers:
        if key[:1] == ":":
            if key == ":status" and not status:
                status = value
        elif key.startswith("grpc-"):
            if key == "grpc-status" and code is None:
                code = _CODES.get(int(value) if value.isdigit() else -1, grpc.StatusCode.UNKNOWN)
            elif key == "grpc-message" and not details:
                details = unquote(value)
        elif key == "content-type":
            pass
        elif key.endswith("-bin"):
            pairs.append((key, base64.b64decode(value + "=" * (-len(value) % 4))))
        else:
            pairs.append((key, value))
    return AnswerHead(status, code, details, tuple(pairs))


# An answer that ended with its DATA: no trailers at all.
NO_TRAILERS = answer_head([])


def reply_or_error(stream: UnaryStream, trailers: AnswerHead) -> UnaryReply | CallError:
    """The call's end: its trailers (or a trailers-only answer) say how it went; an OK answer
    must be one whole uncompressed message."""
    code = trailers.code
    if code is None:
        http_status = trailers.status or "200"
        if http_status != "200":  # a head-only answer from no gRPC server
            return http_status_error(http_status)
        return CallError(grpc.StatusCode.INTERNAL, "the upstream's answer ended without a status")
    if code != grpc.StatusCode.OK:
        return CallError(code, trailers.details, trailers.metadata)
    data = stream.data
    length = int.from_bytes(data[1:5], "big") if len(data) >= 5 else -1
    if length != len(data) - 5 or data[0]:
        why = "compressed" if data[:1] == b"\x01" else "not one whole message"
        return CallError(grpc.StatusCode.INTERNAL, f"the upstream's answer is {why}")
    initial = stream.initial.metadata if stream.initial is not None else ()
    return UnaryReply(bytes(data[5:]), initial, trailers.metadata)

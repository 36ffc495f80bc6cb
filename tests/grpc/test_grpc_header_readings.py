"""What the own HTTP/2 transport reads from a header list once per distinct block: a request's
path, content-type, deadline and metadata (`native_call.call_head`), an answer's status, code,
details and metadata (`h2_call.answer_head`), remembered per decoded list (`HeaderReadings`); and
the frame heads written and read with one struct."""

from __future__ import annotations

import base64

import grpc
import pytest
from hpack import Encoder

from gateway.grpc.h2_call import NO_TRAILERS, answer_head
from gateway.grpc.native_call import call_head
from gateway.mesh.hpack_blocks import HeaderBlocks, HeaderReadings
from gateway.mesh.http2 import DATA, END_STREAM, FRAME_HEAD, frame

REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "gw"),
    ("content-type", "application/grpc+proto"),
    ("te", "trailers"),
    ("grpc-timeout", "250m"),
    ("grpc-accept-encoding", "gzip"),
    ("x-user-id", "u1"),
    ("trace-bin", base64.b64encode(b"\x00\xff").decode().rstrip("=")),
    ("x-user-id", "u2"),
]


def test_a_request_head_is_read_in_one_pass() -> None:
    head = call_head(REQUEST)
    assert head.path == "/inference.GRPCInferenceService/ModelInfer"
    assert head.content_type == "application/grpc+proto"
    assert head.timeout == pytest.approx(0.25)
    # Metadata as grpcio gives it: protocol headers left out, -bin decoded, repeats kept in order.
    assert head.metadata == (("x-user-id", "u1"), ("trace-bin", b"\x00\xff"), ("x-user-id", "u2"))


@pytest.mark.parametrize(
    ("value", "seconds"), [("", None), ("5", None), ("x3S", None), ("3S", 3.0), ("7u", 7e-6)]
)
def test_a_malformed_or_absent_deadline_is_none(value: str, seconds: float | None) -> None:
    head = call_head([(":path", "/a/b"), ("grpc-timeout", value)])
    assert head.timeout == (pytest.approx(seconds) if seconds is not None else None)


def test_an_answer_head_and_its_trailers() -> None:
    head = answer_head([(":status", "200"), ("content-type", "application/grpc"), ("x-up", "a")])
    assert (head.status, head.code, head.metadata) == ("200", None, (("x-up", "a"),))
    trailers = answer_head(
        [("grpc-status", "3"), ("grpc-message", "input%20%27x%27%3A bad"), ("x-why-bin", "AAE")]
    )
    assert trailers.code == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers.details == "input 'x': bad"
    assert trailers.metadata == (("x-why-bin", b"\x00\x01"),)
    assert answer_head([("grpc-status", "99")]).code == grpc.StatusCode.UNKNOWN
    assert answer_head([("grpc-status", "x")]).code == grpc.StatusCode.UNKNOWN
    assert (NO_TRAILERS.status, NO_TRAILERS.code, NO_TRAILERS.metadata) == ("", None, ())


def test_a_repeated_block_is_read_once_and_a_changed_one_again() -> None:
    reads: list[list[tuple[str, str]]] = []

    def read(headers: list[tuple[str, str]]) -> int:
        reads.append(headers)
        return len(reads)

    blocks, readings = HeaderBlocks(), HeaderReadings(read)
    encoder = Encoder()
    first = encoder.encode(REQUEST)
    again = encoder.encode(REQUEST)  # all indexed now: the same bytes every time after
    assert readings.of(blocks.decode(first)) == 1
    assert readings.of(blocks.decode(again)) == 2  # a new block (indexed fields): read
    assert readings.of(blocks.decode(again)) == 2  # the same block, the same list: remembered
    assert readings.of(list(REQUEST)) == 3  # an equal list that is not the decoder's: read


def test_readings_are_bounded() -> None:
    reads: list[int] = []

    def read(headers: list[tuple[str, str]]) -> int:
        reads.append(1)
        return len(headers)

    readings = HeaderReadings(read)
    lists = [[("k", str(n))] * (n % 3 + 1) for n in range(200)]
    assert [readings.of(headers) for headers in lists] == [n % 3 + 1 for n in range(200)]
    assert readings.of(lists[-1]) == 2 and len(reads) == 200  # the latest are remembered
    assert readings.of(lists[0]) == 1 and len(reads) == 201  # the first were let go


@pytest.mark.parametrize("size", [0, 5, 70_000, (1 << 24) - 1])
def test_frame_heads_round_trip(size: int) -> None:
    payload = b"\x01" * size
    written = frame(DATA, END_STREAM, (1 << 31) - 1, payload)
    high, low, kind, flags, stream_id = FRAME_HEAD.unpack_from(written)
    assert (high << 16 | low, kind, flags, stream_id) == (size, DATA, END_STREAM, (1 << 31) - 1)
    assert written[FRAME_HEAD.size :] == payload

"""The framing both own HTTP/2 transports share (`gateway/mesh/h2_frames.py`): bytes split into
whole frames with the rest left for the next read, and a header block gathered from HEADERS and
CONTINUATION frames, padding and priority dropped, broken sequences refused."""

from __future__ import annotations

import struct

import pytest

from gateway.mesh.h2_frames import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PING,
    PRIORITY_FLAG,
    WINDOW_UPDATE,
    FrameReader,
    HeaderBlockReader,
    frame,
    split_frames,
)

Frame = tuple[int, int, int, bytes]


def _split(data: bytes) -> tuple[list[Frame], int]:
    seen: list[Frame] = []

    def handle(kind: int, flags: int, stream: int, payload: memoryview) -> None:
        seen.append((kind, flags, stream, bytes(payload)))

    return seen, split_frames(data, handle)


def test_whole_frames_are_handed_over_in_order_and_the_incomplete_rest_is_left() -> None:
    whole = frame(HEADERS, END_HEADERS, 1, b"head") + frame(DATA, END_STREAM, 1, b"x" * 70000)
    partial = frame(PING, 0, 0, b"12345678")
    seen, rest = _split(whole + partial[:12])
    assert seen == [(HEADERS, END_HEADERS, 1, b"head"), (DATA, END_STREAM, 1, b"x" * 70000)]
    assert rest == len(whole)
    assert _split(partial[:5]) == ([], 0)  # not even a whole frame head


def test_the_stream_ids_reserved_bit_is_cleared() -> None:
    seen, _ = _split(frame(DATA, 0, 0x80000003, b"a"))
    assert seen == [(DATA, 0, 3, b"a")]


def test_a_block_in_one_headers_frame_is_whole_at_once() -> None:
    reader = HeaderBlockReader()
    flags = END_HEADERS | END_STREAM
    assert reader.headers(flags, 5, memoryview(b"block")) == (5, flags, b"block")
    assert not reader.open


def test_padding_and_priority_are_dropped() -> None:
    payload = b"\x03" + b"\x00\x00\x00\x01\x10" + b"block" + b"pad"
    reader = HeaderBlockReader()
    block = reader.headers(END_HEADERS | PADDED | PRIORITY_FLAG, 1, memoryview(payload))
    assert block == (1, END_HEADERS | PADDED | PRIORITY_FLAG, b"block")


def test_continuations_complete_a_block_with_the_headers_frames_flags() -> None:
    reader = HeaderBlockReader()
    assert reader.headers(END_STREAM, 7, memoryview(b"one ")) is None
    assert reader.open
    assert reader.continuation(0, 7, memoryview(b"two ")) is None
    assert reader.continuation(END_HEADERS, 7, memoryview(b"three")) == (7, END_STREAM, b"one two three")
    assert not reader.open
    # The next block starts afresh.
    assert reader.headers(END_HEADERS, 9, memoryview(b"next")) == (9, END_HEADERS, b"next")


def test_a_continuation_without_its_headers_is_refused() -> None:
    with pytest.raises(ConnectionError):
        HeaderBlockReader().continuation(END_HEADERS, 1, memoryview(b"x"))
    reader = HeaderBlockReader()
    reader.headers(0, 1, memoryview(b"x"))
    with pytest.raises(ConnectionError):  # on another stream
        reader.continuation(END_HEADERS, 3, memoryview(b"y"))


def test_a_block_over_the_limit_is_refused_as_it_arrives() -> None:
    reader = HeaderBlockReader(max_size=8)
    assert reader.headers(0, 1, memoryview(b"12345")) is None
    with pytest.raises(ConnectionError, match="over 8 bytes"):
        reader.continuation(0, 1, memoryview(b"6789"))
    with pytest.raises(ConnectionError):
        HeaderBlockReader(max_size=8).headers(END_HEADERS, 1, memoryview(b"123456789"))


class _Reader(FrameReader):
    """The shared frame dispatch with what a side does recorded: frames written, DATA handed on."""

    def __init__(self) -> None:
        self._block_reader = HeaderBlockReader()
        self._consumed = 0
        self.written: list[Frame] = []
        self.data: list[tuple[int, bytes]] = []

    def _write_frame(self, data: bytes) -> None:
        self.written.extend(_split(data)[0])

    def _data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        self.data.append((stream_id, bytes(payload)))


def test_padded_data_counts_its_padding_against_the_windows_and_gives_that_share_back() -> None:
    """RFC 9113, 6.9.1: a DATA frame's whole payload is flow-controlled, padding included. Counting
    only the data would leave the peer's windows shrinking by the padding of every frame."""
    reader = _Reader()
    payload = bytes([9]) + b"hello" + bytes(9)  # pad length 9, then the data, then 9 bytes of padding
    reader.feed_frame(DATA, PADDED, 3, memoryview(payload))
    assert reader.data == [(3, b"hello")]
    assert reader._consumed == len(payload)
    # The stream's window gets the padding and its length byte back at once.
    assert reader.written == [(WINDOW_UPDATE, 0, 3, struct.pack(">I", 10))]
    reader.feed_frame(DATA, PADDED | END_STREAM, 3, memoryview(payload))
    assert reader.data[-1] == (3, b"hello")
    assert len(reader.written) == 1  # the stream is ending: nothing more to give back to it


@pytest.mark.parametrize("payload", [b"", bytes([5]) + b"abcd"])
def test_padding_longer_than_its_frame_is_refused(payload: bytes) -> None:
    with pytest.raises(ConnectionError):
        _Reader().feed_frame(DATA, PADDED, 1, memoryview(payload))

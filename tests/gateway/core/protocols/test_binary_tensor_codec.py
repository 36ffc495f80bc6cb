"""The binary tensor extension's byte layout, and its errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gateway.core.errors import BadRequest
from gateway.core.protocols.binary import decode_tensor, encode_tensor, split_body


def test_fixed_size_tensors_are_little_endian_row_major() -> None:
    data = np.array([[1, 256], [-2, 3]], dtype=np.int16)
    raw = encode_tensor(data, "INT16")
    assert raw == struct.pack("<4h", 1, 256, -2, 3)
    np.testing.assert_array_equal(decode_tensor(raw, "INT16", (2, 2), "x"), data)


def test_bytes_elements_are_length_prefixed() -> None:
    data = np.array([b"ab", "\u00e9", b""], dtype=object)
    raw = encode_tensor(data, "BYTES")
    assert raw == b"\x02\x00\x00\x00ab" + b"\x02\x00\x00\x00\xc3\xa9" + b"\x00\x00\x00\x00"
    decoded = decode_tensor(raw, "BYTES", (3,), "x")
    assert decoded.tolist() == [b"ab", "\u00e9".encode(), b""]


@pytest.mark.parametrize(
    ("raw", "shape", "message"),
    [
        (b"\x02\x00\x00\x00ab", (2,), "x: BYTES data ends after 1 of 2 elements"),
        (b"\x05\x00\x00\x00ab", (1,), "x: BYTES element 0 declares 5 bytes, only 2 left"),
        (b"\x01\x00\x00\x00ab", (1,), "x: 1 bytes left over after 1 BYTES elements"),
        (b"\x01\x00", (1,), "x: BYTES data ends after 0 of 1 elements"),
    ],
)
def test_malformed_bytes_tensors_are_refused(raw: bytes, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_tensor(raw, "BYTES", shape, "x")
    assert caught.value.message == message


def test_bool_bytes_other_than_zero_and_one_are_refused() -> None:
    assert decode_tensor(b"\x00\x01", "BOOL", (2,), "x").tolist() == [False, True]
    with pytest.raises(BadRequest, match="BOOL elements must be bytes 0 or 1"):
        decode_tensor(b"\x00\x02", "BOOL", (2,), "x")


def test_size_must_match_the_shape() -> None:
    with pytest.raises(BadRequest) as caught:
        decode_tensor(b"\x00" * 10, "FP32", (1, 3), "input 'f'")
    assert caught.value.message == "input 'f': shape [1, 3] of FP32 needs 12 bytes, got 10"


@pytest.mark.parametrize(
    ("header", "message"),
    [("x1", "'x1' is not an integer"), ("-1", "-1 is outside the body's 4 bytes"), ("5", "5 is outside")],
)
def test_header_length_must_be_within_the_body(header: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        split_body(b"{}ab", header)
    assert caught.value.message.startswith("Inference-Header-Content-Length: " + message)


def test_split_body() -> None:
    head, tail = split_body(b"{}ab", "2")
    assert (bytes(head), bytes(tail)) == (b"{}", b"ab")
    head, tail = split_body(b"{}", None)
    assert (bytes(head), bytes(tail)) == (b"{}", b"")

"""The binary tensor data extension of the Open Inference Protocol (as Triton defines it).

A request or response body is a JSON header followed by raw tensor bytes. The header's length is in
the `Inference-Header-Content-Length` HTTP header; each tensor sent in binary declares its byte size
as the `binary_data_size` parameter and carries no `data`; the raw parts follow the JSON in the order
the tensors are listed. Fixed-size elements are little-endian; a BYTES element is a 4-byte
little-endian length followed by that many bytes. gRPC's `raw_input_contents` and
`raw_output_contents` use the same per-tensor layout, so both transports share these functions.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import numpy as np

from gateway.core.errors import BadRequest
from gateway.core.protocols.datatypes import BYTES, element_count, format_shape, numpy_dtype

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
"""HTTP header giving the size of the JSON part of a body that carries binary tensors."""
BINARY_DATA_SIZE: Final = "binary_data_size"
"""Tensor parameter: byte size of this tensor's raw part."""
BINARY_DATA: Final = "binary_data"
"""Requested-output parameter: send this output in binary."""
BINARY_DATA_OUTPUT: Final = "binary_data_output"
"""Request parameter: send every output in binary."""

_LENGTH_PREFIX = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    """Split a body into its JSON header and its binary part (empty when there is no header)."""
    view = memoryview(body)
    if header_length is None:
        return view, view[:0]
    try:
        size = int(header_length)
    except ValueError:
        raise BadRequest(f"{HEADER_LENGTH}: {header_length!r} is not an integer") from None
    if not 0 <= size <= len(body):
        raise BadRequest(f"{HEADER_LENGTH}: {size} is outside the body's {len(body)} bytes")
    return view[:size], view[size:]


class BinaryParts:
    """Hands out the raw tensor parts that follow the JSON header, in order."""

    __slots__ = ("_offset", "_view")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._offset = 0

    def take(self, size: int, where: str) -> memoryview:
        end = self._offset + size
        if end > len(self._view):
            left = len(self._view) - self._offset
            raise BadRequest(f"{where}: {BINARY_DATA_SIZE} is {size} but only {left} binary bytes remain")
        part = self._view[self._offset : end]
        self._offset = end
        return part

    def finish(self) -> None:
        left = len(self._view) - self._offset
        if left:
            raise BadRequest(f"binary data: {left} bytes after the last tensor's {BINARY_DATA_SIZE}")


def decode_tensor(raw: bytes | memoryview, datatype: str, shape: Sequence[int], where: str) -> np.ndarray:
    """Raw bytes of one tensor -> a numpy array of `shape`."""
    dtype = numpy_dtype(datatype, where)
    count = element_count(shape)
    if datatype == BYTES:
        return decode_bytes_elements(raw, count, where).reshape(shape)
    needed = count * dtype.itemsize
    if len(raw) != needed:
        raise BadRequest(
            f"{where}: shape {format_shape(shape)} of {datatype} needs {needed} bytes, got {len(raw)}"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if array.dtype.kind == "b" and count and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise BadRequest(f"{where}: BOOL elements must be bytes 0 or 1")
    return array


def encode_tensor(array: np.ndarray, datatype: str) -> bytes:
    """A numpy array -> the raw bytes of one tensor (row-major, little-endian)."""
    if datatype == BYTES:
        return encode_bytes_elements(array)
    dtype = numpy_dtype(datatype, "tensor")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def decode_bytes_elements(raw: bytes | memoryview, count: int, where: str) -> np.ndarray:
    """Length-prefixed BYTES elements -> a flat object array of `count` bytes objects."""
    view = memoryview(raw)
    out = np.empty(count, dtype=object)
    offset = 0
    end = len(view)
    for index in range(count):
        if offset + 4 > end:
            raise BadRequest(f"{where}: BYTES data ends after {index} of {count} elements")
        (length,) = _LENGTH_PREFIX.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            left = end - offset
            raise BadRequest(f"{where}: BYTES element {index} declares {length} bytes, only {left} left")
        out[index] = bytes(view[offset : offset + length])
        offset += length
    if offset != end:
        raise BadRequest(f"{where}: {end - offset} bytes left over after {count} BYTES elements")
    return out


def encode_bytes_elements(array: np.ndarray) -> bytes:
    """A BYTES tensor (elements bytes or str) -> length-prefixed elements."""
    parts: list[bytes] = []
    for element in array.reshape(-1):
        data = as_bytes(element)
        parts.append(_LENGTH_PREFIX.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def as_bytes(element: object) -> bytes:
    """One BYTES element as bytes: str is UTF-8 encoded, bytes-like is copied as is."""
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode()
    if isinstance(element, bytearray | memoryview | np.bytes_):
        return bytes(element)
    raise ValueError(f"a BYTES element must be bytes or str, not {type(element).__name__}")

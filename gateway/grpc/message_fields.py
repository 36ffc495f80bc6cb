"""Reads the model name and version from an OIP v2 request message without decoding it.

`ModelInferRequest`, `ModelMetadataRequest` and `ModelReadyRequest` carry the model's name in field 1
and its version in field 2 (both `string`). Only the top level of the message is walked: every other
field is skipped by its length, so the tensors (`inputs`, `raw_input_contents`) are never decoded or
copied. The encoding is protobuf's (https://protobuf.dev/programming-guides/encoding/).
"""

from __future__ import annotations

from gateway.core.errors import BadRequest

# Wire types of protobuf's encoding.
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
# Field numbers of model name and version in the OIP v2 request messages above.
_NAME_FIELD, _VERSION_FIELD = 1, 2
# A varint is at most 10 bytes long (64 bits, 7 per byte).
_MAX_VARINT_BYTES = 10


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint starting at `at`, and the offset after it."""
    value = 0
    for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
        if at >= len(data):
            raise BadRequest("malformed request message: it ends inside a varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
    raise BadRequest("malformed request message: a varint longer than 10 bytes")


def model_fields(message: bytes) -> tuple[str | None, str | None]:
    """(model name, model version) of a serialized OIP v2 request; None for a field that is absent
    or empty (protobuf leaves empty strings out). Raises `BadRequest` for a malformed message."""
    name: str | None = None
    version: str | None = None
    at, end = 0, len(message)
    while at < end:
        key = message[at]  # a key or length under 128 is one byte: read inline (nearly all are)
        if key < 0x80:
            at += 1
        else:
            key, at = _varint(message, at)
        number, wire = key >> 3, key & 7
        if wire == _LENGTH:
            size = message[at] if at < end else 0x80
            if size < 0x80:
                at += 1
            else:
                size, at = _varint(message, at)
            if at + size > end:
                raise BadRequest("malformed request message: a field runs past its end")
            if number in (_NAME_FIELD, _VERSION_FIELD):
                try:
                    text = message[at : at + size].decode()
                except UnicodeDecodeError:
                    raise BadRequest("malformed request message: the model name is not UTF-8") from None
                if number == _NAME_FIELD:
                    name = text or None
                else:
                    version = text or None
            at += size
        elif wire == _VARINT:
            _, at = _varint(message, at)
        elif wire == _FIXED64:
            at += 8
        elif wire == _FIXED32:
            at += 4
        else:  # groups (3, 4) are not used by proto3 messages; anything else is not protobuf
            raise BadRequest(f"malformed request message: wire type {wire}")
        if number == 0:
            raise BadRequest("malformed request message: field number 0")
    if at > end:
        raise BadRequest("malformed request message: a field runs past its end")
    return name, version

"""Bodies that differ from one already read only in their tensors' numbers, read without a parse.

One model's samples mostly repeat one body with other numbers: the same names, datatypes, shapes
and model version, byte for byte, around different `data` arrays. A body read whole (and found
plain by `plugins.monitor.fast_decode`) leaves a template: its bytes cut around each tensor's
`data` array. A later body that has exactly those bytes around arrays of numbers has the same
structure, so only its arrays are taken: a few `bytes.find` and `startswith` calls in C instead of
a parse into dicts and lists and a check of every key. The arrays of many bodies are then parsed in
one call (`fast_decode._resolved`).

A template is learnt only where the cut is sure: no backslash in the body (so no escaped quote can
hide or fake a key), exactly one `"data": [` per tensor, each array flat (no bracket, brace or quote
inside) and holding the values the parse found. A body matches only when every cut lands on its
template's bytes and every array it takes is flat; the arrays' numbers and lengths are checked
when they are parsed. Anything else is read whole, as before.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

# The key of a tensor's values in OIP v2 JSON, quotes included: as bytes, it starts a cut.
_KEY: Final = b'"data"'

Pieces = tuple[bytes, ...]
"""A body's bytes around its data arrays: the first piece ends with the first array's '[', each
next one starts with the ']' that closes an array, and the last one ends the body."""


def learn(body: bytes, data: list[Any]) -> Pieces | None:
    """The template of `body`, whose tensors' data lists (in order) are `data`; None when its
    arrays cannot be told apart by their bytes alone."""
    if b"\\" in body:
        return None
    pieces: list[bytes] = []
    start = 0
    position = body.find(_KEY)
    while position != -1:
        opener = body.find(b"[", position + len(_KEY))
        if opener != -1 and body[position + len(_KEY) : opener].strip() == b":":
            closer = body.find(b"]", opener)
            if closer == -1 or len(pieces) == len(data):
                return None
            span = body[opener + 1 : closer]
            if not _flat(span) or _parsed(span) != data[len(pieces)]:
                return None
            pieces.append(body[start : opener + 1])
            start = position = closer
        position = body.find(_KEY, position + 1)
    if len(pieces) != len(data) or not pieces:
        return None
    pieces.append(body[start:])
    return tuple(pieces)


def first_piece(body: bytes) -> bytes | None:
    """What a template of `body` would be looked up by: its bytes up to the first array's '['."""
    position = body.find(_KEY)
    if position == -1:
        return None
    opener = body.find(b"[", position + len(_KEY))
    return body[: opener + 1] if opener != -1 else None


def spans(body: bytes, pieces: Pieces) -> list[bytes] | None:
    """The text inside each data array of `body` when it has exactly the template's bytes around
    flat arrays; else None."""
    taken: list[bytes] = []
    start = len(pieces[0])
    for piece in pieces[1:]:
        end = body.find(b"]", start)
        if end == -1 or not body.startswith(piece, end):
            return None
        span = body[start:end]
        if not _flat(span):
            return None
        taken.append(span)
        start = end + len(piece)
    return taken if start == len(body) else None


def _parsed(span: bytes) -> Any:
    """An array's values from its text; None when they are not JSON (never so in a body orjson
    read whole, but a failure here must not reach the background task)."""
    try:
        return orjson.loads(b"[" + span + b"]")
    except orjson.JSONDecodeError:
        return None


def _flat(span: bytes) -> bool:
    """No nested array or object, and no string: numbers (and JSON's literals) only."""
    return b"[" not in span and b"{" not in span and b'"' not in span

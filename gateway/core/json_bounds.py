"""JSON read from a caller, with bounds on its nesting depth and size.

orjson reads up to 1024 levels but writes only 254, so a body nested a few hundred levels deep
parses and then fails wherever it is written back (a cache key, a rewritten body): an error no
filter expected. Every JSON read on the request path goes through `loads`, which refuses such a
body first with a 400 naming the limit, so nothing after it sees a document it cannot handle.

Cost: a body with no more brackets and braces than the depth limit cannot nest deeper than it, and
counting them proves that for most bodies (`bytes.count` for small bodies, one numpy pass for large
ones). Only a body with many containers (a nested tensor of many rows) takes the exact check: escaped
quotes removed, everything but brackets and quotes deleted by `bytes.translate`, the strings'
contents dropped, and the running depth summed by numpy: all C loops.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson

from gateway.core.errors import BadRequest

# A tensor's `data` nests as deep as its rank, and real models take ranks up to about 6 (a batch of
# video clips: N, C, T, H, W); chat requests with tool schemas reach 10 to 20 levels. 64 leaves room
# for all of them inside their envelopes, and stays far below the 254 levels orjson can write.
MAX_DEPTH: Final = 64
# Bodies are already capped by `listen.max_body_bytes` (10 MiB by default) as they are read; this is
# the backstop for JSON that reaches a decoder another way. 256 MiB: past it one parse costs seconds
# of CPU and gigabytes of Python objects, more than one request may take from everyone else.
MAX_BYTES: Final = 256 * 1024 * 1024

# Up to this size two `bytes.count` calls are cheaper than numpy's fixed cost; past it numpy's one
# vectorised pass is (measured: 4 KiB is where they cost the same, about 5 µs).
_SMALL_BODY: Final = 4096
# Every byte but the four brackets and the quote, for bytes.translate to delete.
_NOT_STRUCTURE: Final = bytes(byte for byte in range(256) if byte not in b'[]{}"')
# Opening brackets become +1 and closing ones -1 (0xFF read as a signed byte).
_AS_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
# '[' is 0x5B and '{' is 0x7B: setting bit 0x20 maps both, and no other byte, to 0x7B.
_CASE_BIT: Final = 0x20
_OPEN_BRACE: Final = 0x7B

Json = bytes | bytearray | memoryview


class JsonTooComplex(BadRequest):
    """A JSON body beyond the depth or size limit (400: the caller must send a simpler body)."""

    code = "json_too_complex"


def loads(body: Json, what: str = "the request body", *, max_depth: int = MAX_DEPTH) -> Any:
    """`orjson.loads` for JSON from a caller: raises `JsonTooComplex` for a body nested deeper than
    `max_depth` or larger than `MAX_BYTES`, and `orjson.JSONDecodeError` as orjson does."""
    text = body if type(body) is bytes else _as_bytes(body)
    if len(text) > _SMALL_BODY:
        if len(text) > MAX_BYTES:
            raise JsonTooComplex(f"{what} is {len(text)} bytes of JSON; the size limit is {MAX_BYTES} bytes")
        containers = int(np.count_nonzero((np.frombuffer(text, dtype=np.uint8) | _CASE_BIT) == _OPEN_BRACE))
    else:
        containers = text.count(b"[") + text.count(b"{")
    if containers > max_depth:
        depth = nesting_depth(text)
        if depth > max_depth:
            raise JsonTooComplex(
                f"{what} nests JSON {depth} levels deep; the depth limit is {max_depth} levels"
            )
    return orjson.loads(text)


def nesting_depth(text: bytes | bytearray) -> int:
    """The deepest nesting of arrays and objects in a JSON text (exact for valid JSON, where a
    backslash or a quote occurs only in strings)."""
    if b"\\" in text:
        # Escaped backslashes first, left to right as a reader pairs them; then every backslash
        # left before a quote escapes it, and the quote cannot end a string. (Both are C loops; a
        # regular expression here cost a second on megabytes of backslashes.)
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Split at the quotes, the odd pieces are the strings' contents: brackets there do not count.
    pieces = text.translate(None, _NOT_STRUCTURE).split(b'"')
    brackets = b"".join(pieces[::2])
    if not brackets:
        return 0
    steps = np.frombuffer(brackets.translate(_AS_STEPS), dtype=np.int8)
    return int(np.cumsum(steps, dtype=np.int64).max())


def _as_bytes(body: Json) -> bytes | bytearray:
    """The body as a bytes-like object with `count`; a view of a whole bytes object is not copied."""
    if isinstance(body, memoryview):
        whole = body.obj
        if isinstance(whole, bytes) and body.nbytes == len(whole) and body.c_contiguous:
            return whole
        return body.tobytes()
    return body

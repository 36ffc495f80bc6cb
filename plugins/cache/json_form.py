"""A JSON body's structural form: its object members sorted and its spacing dropped, every number,
string and literal kept as sent. A cheaper canonical form for keys that never leave the process.

Why: the canonical form (`keys.canonical_body`) parses the body and writes it back sorted, and both
passes cost per number: about 80 µs for a 16 KB tensor of 2,652 floats. Equality of two requests
does not need the numbers read: two bodies whose forms here are equal are the same document with
members in another order and spaces elsewhere, which every JSON reader takes as the same request.
A number written two ways (`1.50`, `1.5`) gives two forms: a false miss, which costs a miss; never a
false hit, which would be a wrong answer.

How: a tokenizer (one regular expression) reads the structure; an array of numbers and literals
alone (no string, array or object in it: a tensor's `data`) is found by `bytes.find` to its `]` and
kept as one slice, so its thousands of numbers are never visited one by one in Python. Objects are
rebuilt with their members in order of their keys' bytes (a stable sort: members of the same key
keep their order, so a reader that keeps the last, or the first, reads the same).

Soundness: the form is the body with two changes alone, spaces removed beside structural characters
(never between two characters of a number or literal, so `[1 2]` cannot become `[12]`) and object
members reordered; the structure (strings, brackets, colons, commas) is checked strictly on the
way. A number or literal that is not valid JSON is kept as sent, so a body invalid there has the
same form only as bodies invalid the same way. Tested by hypothesis in
`tests/plugins/test_cache_json_form.py`, edits of bodies included.

`None` (the caller uses the canonical form instead) for what this does not handle cheaply or
cannot order by bytes: a body under `MIN_BYTES`, a backslash anywhere (an escape can spell one key
two ways), spacing inside an array of numbers that follows no comma, more tokens outside such
arrays than one per `BYTES_PER_TOKEN` bytes (a body of many small objects, which orjson reads
faster), nesting deeper than `json_bounds.MAX_DEPTH` (the canonical form refuses that with a 400),
and any structural error.
"""

from __future__ import annotations

import re
from typing import Final

import numpy as np

from gateway.core.json_bounds import MAX_DEPTH

# Below this orjson's parse and sorted write cost a microsecond or two (1.9 µs for a 97-byte OIP v2
# body, digest included), less than reading the structure in Python (15 µs for the same body).
MIN_BYTES: Final = 1024
# Tokens outside arrays of numbers are read in Python at about half a microsecond each, and orjson
# costs about 8 ns a byte of numbers: past one token per 64 bytes a body is cheaper to hand to
# orjson (an OIP v2 request of 16 KB with one input has 28 tokens; its budget is 266).
BYTES_PER_TOKEN: Final = 64
SPARE_TOKENS: Final = 16

_WS: Final = b" \t\n\r"  # JSON's whitespace, and nothing else (bytes.strip() would take \x0b, \x0c)
# Each byte as one of three: spacing (a space), a comma, or anything else ("a"); a run of spacing
# that follows anything else shows as "a" then " ".
_SPACE, _COMMA, _OTHER = b" ,a"
_CLASSES: Final = bytes(
    _SPACE if byte in _WS else _COMMA if byte == _COMMA else _OTHER for byte in range(256)
)
# Optional whitespace, then one token: a structural character, a string (no backslash: the caller
# checked), or a run of anything else (a number or literal, valid or not: kept as sent).
_TOKEN: Final = re.compile(rb'[ \t\n\r]*(?:([\[\]{}:,])|("[^"]*")|([^ \t\n\r\[\]{}:,"]+))')


class _NotHandled(Exception):
    """Raised inside the reader: the body takes the canonical form instead."""


def structural_form(body: bytes) -> bytes | None:
    """The body's structural form (see the module's docstring), or None where it takes the
    canonical form."""
    if len(body) < MIN_BYTES or b"\\" in body:
        return None
    reader = _Reader(body)
    out: list[bytes] = []
    try:
        end = reader.value(0, out, 0)
    except _NotHandled:
        return None
    if body[end:].strip(_WS):
        return None  # something after the document
    return b"".join(out)


class _Reader:
    __slots__ = ("_body", "_budget")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._budget = SPARE_TOKENS + len(body) // BYTES_PER_TOKEN

    def _next(self, pos: int) -> re.Match[bytes]:
        self._budget -= 1
        if self._budget < 0:
            raise _NotHandled
        match = _TOKEN.match(self._body, pos)
        if match is None:
            raise _NotHandled  # only whitespace, to the end: a value was missing
        return match

    def value(self, pos: int, out: list[bytes], depth: int) -> int:
        """Appends the form of the value at `pos` to `out`; returns the position after it."""
        match = self._next(pos)
        punct, string, scalar = match.groups()
        if string is not None:
            out.append(string)
        elif scalar is not None:
            out.append(scalar)
        elif punct == b"[":
            return self._array(match.end(), out, depth + 1)
        elif punct == b"{":
            return self._object(match.end(), out, depth + 1)
        else:
            raise _NotHandled  # a value cannot start with ] } : ,
        return match.end()

    def _array(self, pos: int, out: list[bytes], depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _NotHandled
        body = self._body
        close = body.find(b"]", pos)
        if close == -1:
            raise _NotHandled
        if (
            body.find(b'"', pos, close) == -1
            and body.find(b"[", pos, close) == -1
            and body.find(b"{", pos, close) == -1
        ):
            # Numbers and literals alone (memchr scans, a few µs for 16 KB): one slice, as sent.
            out.extend((b"[", _flat(body[pos:close]), b"]"))
            return close + 1
        out.append(b"[")
        match = self._next(pos)
        if match.group(1) == b"]":
            out.append(b"]")
            return match.end()
        while True:
            pos = self.value(pos, out, depth)
            match = self._next(pos)
            punct = match.group(1)
            if punct == b"]":
                out.append(b"]")
                return match.end()
            if punct != b",":
                raise _NotHandled
            out.append(b",")
            pos = match.end()

    def _object(self, pos: int, out: list[bytes], depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _NotHandled
        members: list[tuple[bytes, list[bytes]]] = []
        match = self._next(pos)
        if match.group(1) == b"}":
            out.append(b"{}")
            return match.end()
        while True:
            key = match.group(2)
            if key is None:
                raise _NotHandled  # a key must be a string
            match = self._next(match.end())
            if match.group(1) != b":":
                raise _NotHandled
            member = [key, b":"]
            pos = self.value(match.end(), member, depth)
            members.append((key, member))
            match = self._next(pos)
            punct = match.group(1)
            if punct == b"}":
                break
            if punct != b",":
                raise _NotHandled
            match = self._next(match.end())
        # Stable: members of one key keep their order. Without escapes a key's bytes spell it one
        # way only, so equal keys compare equal here.
        members.sort(key=_by_key)
        out.append(b"{")
        last = len(members) - 1
        for index, (_, member) in enumerate(members):
            out.extend(member)
            if index != last:
                out.append(b",")
        out.append(b"}")
        return match.end()


def _by_key(member: tuple[bytes, list[bytes]]) -> bytes:
    return member[0]


def _flat(items: bytes) -> bytes:
    """The inside of an array of numbers and literals, without its spacing: removed where each run
    of it follows a comma (`", "`, a newline and an indent), since a run between two characters of
    numbers (`1 2`) is not spacing but an error that removing it would hide. Other spacing raises
    (`1 , 2`: no serialiser writes it). Two `bytes.translate` passes and one numpy test: C loops."""
    items = items.strip(_WS)
    if b" " not in items and b"\n" not in items and b"\t" not in items and b"\r" not in items:
        return items  # compact (orjson, JavaScript): as sent
    classes = np.frombuffer(items.translate(_CLASSES), dtype=np.uint8)
    if bool(((classes[:-1] == _OTHER) & (classes[1:] == _SPACE)).any()):  # 5 µs for 18 KB;
        raise _NotHandled  # `b"a " in ...` took 36, its first byte matching almost everywhere
    return items.translate(None, _WS)

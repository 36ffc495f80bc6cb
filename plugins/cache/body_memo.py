"""What the cache reads from a request body, remembered by the body's bytes, so a body seen again is
not read again.

The cache reads two things from a body: its canonical JSON form for the key
(`keys.canonical_body`; for keys that never leave the process, that form's digest), and whether
it may be an OpenAI completion (a search of the whole body for two field names). Both are pure
functions of the body's bytes, so what was read for one request serves any later request whose
body is byte for byte the same. Such repeats are what a cache is
for: an answer served from the cache needs the key first, and without this every hit with a 16 KB
body of floats paid the whole parse and write (about 80 µs) before its lookup. A repeat costs one
dict lookup instead: Python's hash of the bytes (about 4 µs for 16 KB, computed once per bytes object
and then cached in it, so the second table's lookup is nearly free) and, when it matches, a
comparison of every byte (0.2 µs). The lookup is by the bytes themselves, not a digest of them, so
two different bodies never share a result, however their hashes collide. Keys are the same bytes
as without this table: it changes when the work is done, not what the key is.

A body seen once pays that lookup beside the work itself (about 5% more for 16 KB of floats).

Each table is an LRU bounded by bytes (each body and its result), so its memory does not grow with
the traffic. Bodies below `MIN_BODY_BYTES` are not kept (reading them costs about what remembering
costs), nor above `MAX_BODY_BYTES` (one such body would push out many smaller ones that are likelier
to come again). A body the function raises for (nested too deep: `JsonTooComplex`) is not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Generic, TypeVar

# Below 1 KiB a parse and a write cost about a microsecond (measured: 1.0 µs for a 97-byte OIP v2
# body), close to what remembering the body costs; above it the parse grows with the body.
MIN_BODY_BYTES: Final = 1024
# 4 MiB per table and route: a few hundred inference bodies of 16 KB, small next to the answers the
# cache itself keeps (64 MiB by default).
MAX_TABLE_BYTES: Final = 4 * 1024 * 1024
# An eighth of the table: one body never pushes out more than an eighth of what is remembered.
MAX_BODY_BYTES: Final = MAX_TABLE_BYTES // 8
# Python's own bookkeeping per remembered body (dict slot, object headers): an estimate.
_ENTRY_OVERHEAD_BYTES: Final = 160

T = TypeVar("T", bytes, bool)


class BodyMemo(Generic[T]):
    """`read(body)`, remembered for repeated bodies; called as the function it wraps."""

    __slots__ = ("_bytes", "_max_bytes", "_read", "_results")

    def __init__(self, read: Callable[[bytes], T], max_bytes: int = MAX_TABLE_BYTES) -> None:
        self._read: Callable[[bytes], T] = read
        self._max_bytes = max_bytes
        self._results: dict[bytes, T] = {}  # in use order, oldest first
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._results)

    def __call__(self, body: bytes) -> T:
        if not MIN_BODY_BYTES <= len(body) <= MAX_BODY_BYTES or type(body) is not bytes:
            return self._read(body)
        results = self._results
        if body in results:
            result = results.pop(body)
        else:
            result = self._read(body)  # raises for a body it cannot read: nothing remembered
            self._bytes += _size(body, result)
        results[body] = result  # now the youngest
        while self._bytes > self._max_bytes:
            oldest = next(iter(results))
            self._bytes -= _size(oldest, results.pop(oldest))
        return result


def _size(body: bytes, result: bytes | bool) -> int:
    return len(body) + (len(result) if isinstance(result, bytes) else 0) + _ENTRY_OVERHEAD_BYTES

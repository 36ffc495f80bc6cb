"""HPACK as the own HTTP/2 server transport (`http2.py`) and unary client
(`gateway/grpc/h2_connection.py`) use it: fields written as literals without indexing (nothing to
track), a decoder that reuses the blocks it decoded before, and what a reader makes of those blocks' header
lists, remembered the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast

from hpack import Decoder

_T = TypeVar("_T")
# Distinct header blocks remembered per connection: Envoy's are a handful; the bound keeps a client
# sending ever-new blocks from growing the cache.
_BLOCK_CACHE = 64


def hpack_integer(value: int, prefix: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541, 5.1) with `first`'s high bits in its first byte."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman (RFC 7541, 6.2.2)."""
    return b"\x00" + hpack_integer(len(name), 7, 0) + name + hpack_integer(len(value), 7, 0) + value


class HeaderBlocks:
    """An HPACK decoder that remembers the blocks it decoded: a block seen before is reused while
    the dynamic table is unchanged (a peer's repeated headers are all indexed, the same bytes each
    time), which skips the decoder's Python work for nearly every block."""

    __slots__ = ("_blocks", "decoder")

    def __init__(self, max_decoded: int | None = None) -> None:
        """`max_decoded`: the decoded size (RFC 9113's header list size) past which the decoder
        gives up with `hpack.OversizedHeaderListError`, leaving its table unusable (else hpack's
        64 KiB)."""
        self.decoder = Decoder() if max_decoded is None else Decoder(max_header_list_size=max_decoded)
        self._blocks: dict[bytes, tuple[object, int, list[tuple[str, str]], int]] = {}

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        return self.decode_sized(block)[0]

    def decode_sized(self, block: bytes) -> tuple[list[tuple[str, str]], int]:
        """The headers, and their list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (each
        name's and value's length plus 32, RFC 9113 6.5.2)."""
        entries = self.decoder.header_table.dynamic_entries
        state = (entries[0] if entries else None, len(entries))
        cached = self._blocks.get(block)
        if cached is not None and cached[0] is state[0] and cached[1] == state[1]:
            return cached[2], cached[3]
        headers = cast(list[tuple[str, str]], self.decoder.decode(block))
        size = 32 * len(headers)
        for name, value in headers:
            size += len(name) + len(value)
        after = (entries[0] if entries else None, len(entries))
        if after[0] is state[0] and after[1] == state[1]:  # the block left the table unchanged
            if len(self._blocks) >= _BLOCK_CACHE:
                self._blocks.clear()
            self._blocks[block] = (after[0], after[1], headers, size)
        return headers, size


class HeaderReadings(Generic[_T]):
    """What `read` makes of a header list, remembered by list: `HeaderBlocks` hands back the same
    list for a block it decoded before, so a peer's repeated blocks are read once. Each entry holds
    its list, so an id is never reused while remembered."""

    __slots__ = ("_read", "_readings")

    def __init__(self, read: Callable[[list[tuple[str, str]]], _T]) -> None:
        self._read = read
        self._readings: dict[int, tuple[list[tuple[str, str]], _T]] = {}

    def of(self, headers: list[tuple[str, str]]) -> _T:
        cached = self._readings.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1]
        reading = self._read(headers)
        if len(self._readings) >= _BLOCK_CACHE:  # as many as the decoder keeps blocks
            self._readings.clear()
        self._readings[id(headers)] = (headers, reading)
        return reading

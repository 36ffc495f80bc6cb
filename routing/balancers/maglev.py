"""Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size filled by each endpoint
in turn from its own permutation of the slots.

Lookups are one modulo and one index. Spreading is nearly perfect; when an endpoint leaves, its slots
go to the others and only a small fraction (about a percent at the default size) of the other slots
change owner: less minimal than a ring, in exchange for the even spread and O(1) lookup.
Weights follow Envoy: in round r an endpoint takes a slot only while its count is below
r x weight / max weight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from routing.endpoints import Endpoint

# Envoy's default table size. It must be prime so that every skip generates a full permutation, and
# the paper advises at least 100 slots per endpoint to keep the spread within about 1%.
DEFAULT_TABLE_SIZE = 65537


def _hash(address: str, salt: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(address.encode(), digest_size=8, salt=salt).digest(), "big")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    divisor = 2
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 1
    return True


class MaglevTable:
    __slots__ = ("_size", "_table")

    def __init__(self, endpoints: Sequence[Endpoint], table_size: int = DEFAULT_TABLE_SIZE) -> None:
        if not endpoints:
            raise ValueError("a maglev table needs at least one endpoint")
        if not _is_prime(table_size):
            raise ValueError(f"maglev table_size must be prime, got {table_size}")
        if any(ep.weight <= 0 for ep in endpoints):
            raise ValueError("every maglev weight must be above zero")
        # Filling in address order makes the table independent of the order endpoints were given in.
        ordered = sorted(endpoints, key=lambda ep: ep.address)
        self._size = table_size
        self._table = self._fill(ordered, table_size)

    @staticmethod
    def _fill(endpoints: list[Endpoint], size: int) -> list[Endpoint]:
        count = len(endpoints)
        position = [_hash(ep.address, b"offset") % size for ep in endpoints]
        skip = [_hash(ep.address, b"skip") % (size - 1) + 1 for ep in endpoints]
        max_weight = max(ep.weight for ep in endpoints)
        share = [ep.weight / max_weight for ep in endpoints]
        taken = [0] * count
        owner = [-1] * size
        filled = 0
        round_number = 0
        while filled < size:
            round_number += 1
            for i in range(count):
                if taken[i] >= share[i] * round_number:
                    continue
                slot = position[i]
                while owner[slot] >= 0:
                    slot = (slot + skip[i]) % size
                owner[slot] = i
                position[i] = (slot + skip[i]) % size
                taken[i] += 1
                filled += 1
                if filled == size:
                    break
        return [endpoints[i] for i in owner]

    def lookup(self, key_hash: int) -> Endpoint:
        return self._table[key_hash % self._size]

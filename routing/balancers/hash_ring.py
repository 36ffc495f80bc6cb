"""Ring hash ("ketama"): each endpoint owns many points on a 64-bit ring; a key belongs to the first
point at or after its hash.

A point's position depends only on its endpoint's address and index, so removing an endpoint moves
exactly the keys that were on it and no others.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

from routing.endpoints import Endpoint

# Points per unit of weight. 160 is ketama's choice: with it each endpoint's share of the ring stays
# within about 10% of its fair share, and a ring of a few dozen endpoints builds in milliseconds.
DEFAULT_VNODES_PER_WEIGHT = 160


def hash_bytes(data: bytes) -> int:
    """A stable 64-bit hash (BLAKE2b, 8 bytes): the same in every process, unlike hash()."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing:
    __slots__ = ("_owners", "_points", "_size")

    def __init__(
        self, endpoints: Sequence[Endpoint], vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT
    ) -> None:
        if not endpoints:
            raise ValueError("a hash ring needs at least one endpoint")
        if vnodes_per_weight < 1:
            raise ValueError("vnodes_per_weight must be at least 1")
        placed: list[tuple[int, str, Endpoint]] = []
        for endpoint in endpoints:
            if endpoint.weight < 1:
                raise ValueError(f"{endpoint.address}: a ring hash weight must be a positive integer")
            address = endpoint.address
            for replica in range(vnodes_per_weight * endpoint.weight):
                placed.append((hash_bytes(f"{address}#{replica}".encode()), address, endpoint))
        # Sorting by (point, address) makes the ring independent of the order endpoints were given in.
        placed.sort(key=lambda item: (item[0], item[1]))
        self._points = [point for point, _, _ in placed]
        self._owners = [endpoint for _, _, endpoint in placed]
        self._size = len(placed)

    def lookup(self, key_hash: int) -> Endpoint:
        index = bisect.bisect_left(self._points, key_hash)
        return self._owners[index if index < self._size else 0]

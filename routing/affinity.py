"""Endpoint affinity for a key (an experiment's unit id): rendezvous hashing.

Every endpoint gets a score from hash(key, endpoint) and the highest wins, so a key keeps its
endpoint for as long as that endpoint is eligible, and when one leaves only its own keys move. No
ring to rebuild: the eligible endpoints of the moment are scored directly (a handful per cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

from routing.endpoints import Endpoint


def affinity_pick(endpoints: Sequence[Endpoint], key: str) -> Endpoint | None:
    """The endpoint `key` sticks to among `endpoints`; None when there is none."""
    best: Endpoint | None = None
    best_score = -1
    encoded = key.encode()
    for endpoint in endpoints:
        digest = blake2b(encoded + b"|" + endpoint.address.encode(), digest_size=8).digest()
        score = int.from_bytes(digest, "big")
        if score > best_score:
            best, best_score = endpoint, score
    return best

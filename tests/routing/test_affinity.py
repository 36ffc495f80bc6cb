"""Rendezvous affinity: stable per key, and only a leaving endpoint's keys move."""

from __future__ import annotations

from routing.affinity import affinity_pick
from routing.endpoints import Endpoint


def test_a_key_sticks_and_only_the_keys_of_a_leaving_endpoint_move() -> None:
    endpoints = [Endpoint("127.0.0.1", 9000 + i) for i in range(5)]
    keys = [f"user-{i}" for i in range(5000)]
    before = {k: affinity_pick(endpoints, k) for k in keys}
    assert all(affinity_pick(endpoints, k) is before[k] for k in keys[:100])  # stable
    counts = {ep.address: sum(1 for e in before.values() if e is ep) for ep in endpoints}
    assert all(800 < n < 1200 for n in counts.values())  # even spread
    gone = endpoints[2]
    after = {k: affinity_pick([e for e in endpoints if e is not gone], k) for k in keys}
    moved = [k for k in keys if after[k] is not before[k]]
    assert moved and all(before[k] is gone for k in moved)
    assert affinity_pick([], "x") is None

from __future__ import annotations

import random

import pytest

from routing.balancers.round_robin import RoundRobin, RoundRobinFactory
from routing.endpoints import Endpoint


def endpoints(count: int) -> list[Endpoint]:
    return [Endpoint(host="127.0.0.1", port=9000 + i) for i in range(count)]


def test_rotation_visits_every_endpoint_once_per_cycle_in_order() -> None:
    members = endpoints(4)
    balancer = RoundRobin(members, random.Random(3))
    picks = [balancer.pick(None) for _ in range(12)]
    first = picks[0]
    assert first is not None
    start = members.index(first)
    expected = [members[(start + i) % 4] for i in range(12)]
    assert picks == expected


def test_start_position_varies_between_builds() -> None:
    members = endpoints(5)
    rng = random.Random(11)
    starts = {RoundRobin(members, rng).pick(None) for _ in range(50)}
    assert len(starts) == 5


def test_single_endpoint_always_chosen() -> None:
    only = endpoints(1)
    balancer = RoundRobinFactory()(only)
    assert {balancer.pick(None) for _ in range(5)} == {only[0]}


def test_empty_set_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RoundRobin([], random.Random())


def test_weighted_variant_for_slow_start_honours_weights() -> None:
    members = endpoints(2)
    balancer = RoundRobinFactory().weighted(members, [3.0, 1.0])
    picks = [balancer.pick(None) for _ in range(400)]
    assert picks.count(members[0]) == 300

from __future__ import annotations

import pytest

from routing.balancers.base import Balancer
from routing.balancers.weighted_round_robin import SmoothWeightedRoundRobin, WeightedRoundRobinFactory
from routing.endpoints import Endpoint


def named(weights: list[int]) -> tuple[list[Endpoint], dict[int, str]]:
    members = [Endpoint(host="10.0.0.1", port=9000 + i, weight=w) for i, w in enumerate(weights)]
    return members, {id(ep): "abcdefgh"[i] for i, ep in enumerate(members)}


def sequence(balancer: Balancer, labels: dict[int, str], count: int) -> str:
    return "".join(labels[id(balancer.pick(None))] for _ in range(count))


def test_nginx_sequence_for_weights_5_1_1() -> None:
    members, labels = named([5, 1, 1])
    balancer = SmoothWeightedRoundRobin(members)
    assert sequence(balancer, labels, 14) == "aabacaa" * 2


def test_shares_follow_weights_exactly_per_cycle() -> None:
    members, labels = named([3, 2, 1])
    picks = sequence(SmoothWeightedRoundRobin(members), labels, 600)
    assert (picks.count("a"), picks.count("b"), picks.count("c")) == (300, 200, 100)


def test_equal_weights_rotate_in_order() -> None:
    members, labels = named([2, 2, 2])
    assert sequence(SmoothWeightedRoundRobin(members), labels, 6) == "abcabc"


def test_fractional_weights_from_slow_start() -> None:
    members, labels = named([1, 1])
    picks = sequence(WeightedRoundRobinFactory().weighted(members, [1.0, 0.25]), labels, 500)
    assert picks.count("a") == 400


def test_factory_builds_over_endpoint_weights() -> None:
    members, labels = named([5, 1, 1])
    balancer = WeightedRoundRobinFactory()(members)
    assert isinstance(balancer, SmoothWeightedRoundRobin)
    assert sequence(balancer, labels, 7) == "aabacaa"


def test_invalid_weights_are_refused() -> None:
    members, _ = named([1, 0])
    with pytest.raises(ValueError, match="above zero"):
        SmoothWeightedRoundRobin(members)
    with pytest.raises(ValueError, match="2 endpoints"):
        SmoothWeightedRoundRobin(named([1, 1])[0], [1.0])

from __future__ import annotations

import random

import pytest

from routing.balancers import BALANCER_KINDS, WeightedBalancerFactory, make_balancer_factory
from routing.balancers.consistent_hash import ConsistentHash
from routing.balancers.least_request import LeastRequestP2C
from routing.endpoints import Endpoint


def members(count: int) -> list[Endpoint]:
    return [Endpoint(host="10.0.0.5", port=9000 + i) for i in range(count)]


@pytest.mark.parametrize("kind", BALANCER_KINDS)
def test_every_kind_builds_a_balancer_that_picks_a_member(kind: str) -> None:
    options = {"key": "client_ip"} if kind == "consistent_hash" else {}
    eps = members(3)
    balancer = make_balancer_factory(kind, **options)(eps)
    assert {balancer.pick(None) for _ in range(30)} <= set(eps)


def test_all_named_kinds_are_present() -> None:
    assert set(BALANCER_KINDS) == {
        "round_robin",
        "weighted_round_robin",
        "random",
        "least_request",
        "peak_ewma",
        "consistent_hash",
        "least_queue",
        "least_load",
    }


def test_options_reach_the_balancer() -> None:
    factory = make_balancer_factory("least_request", choice_count=3, rng=random.Random(1))
    assert isinstance(factory(members(4)), LeastRequestP2C)
    hashed = make_balancer_factory("consistent_hash", key="header:x-k", algorithm="maglev")(members(2))
    assert isinstance(hashed, ConsistentHash)


def test_slow_start_support_is_visible_on_the_factory() -> None:
    weighted = {k for k in BALANCER_KINDS if k != "consistent_hash"}
    for kind in weighted:
        supports = isinstance(make_balancer_factory(kind), WeightedBalancerFactory)
        assert supports == (kind not in {"peak_ewma", "least_queue", "least_load"})
    assert not isinstance(make_balancer_factory("consistent_hash", key="client_ip"), WeightedBalancerFactory)


def test_unknown_kind_and_option_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown balancer 'fastest'"):
        make_balancer_factory("fastest")
    with pytest.raises(TypeError):
        make_balancer_factory("round_robin", choice_count=2)

from __future__ import annotations

import random
from collections import Counter

import pytest
from scipy.stats import chisquare

from routing.balancers.base import SingleEndpoint
from routing.balancers.least_request import LeastRequestFactory, LeastRequestP2C, WeightedLeastRequest
from routing.endpoints import Endpoint

SIGNIFICANCE = 0.001


def members(count: int, weights: list[int] | None = None) -> list[Endpoint]:
    weights = weights or [1] * count
    return [Endpoint(host="10.0.0.2", port=9000 + i, weight=weights[i]) for i in range(count)]


def test_equal_weights_use_power_of_two_choices() -> None:
    balancer = LeastRequestFactory(rng=random.Random(1))(members(4))
    assert isinstance(balancer, LeastRequestP2C)


def test_idle_endpoints_share_load_evenly() -> None:
    eps = members(4)
    balancer = LeastRequestFactory(rng=random.Random(2))(eps)
    seen = Counter(id(balancer.pick(None)) for _ in range(20_000))
    assert chisquare([seen[id(ep)] for ep in eps]).pvalue > SIGNIFICANCE


def test_prefers_endpoints_with_fewer_requests_in_flight() -> None:
    eps = members(4)
    for ep, load in zip(eps, [0, 5, 5, 5], strict=True):
        ep.inflight = load
    balancer = LeastRequestFactory(rng=random.Random(3))(eps)
    seen = Counter(id(balancer.pick(None)) for _ in range(10_000))
    # The idle endpoint wins whenever it is one of the two draws: 1 - C(3,2)/C(4,2) = 1/2 of picks,
    # against 1/4 for a random choice.
    share = seen[id(eps[0])] / 10_000
    assert 0.47 < share < 0.53


def test_the_busiest_endpoint_is_never_chosen_with_two_choices_of_two() -> None:
    eps = members(2)
    eps[1].inflight = 3
    balancer = LeastRequestFactory(rng=random.Random(4))(eps)
    assert {balancer.pick(None) for _ in range(200)} == {eps[0]}


def test_live_load_balances_out() -> None:
    eps = members(3)
    balancer = LeastRequestFactory(rng=random.Random(5))(eps)
    for _ in range(300):
        chosen = balancer.pick(None)
        assert chosen is not None
        chosen.inflight += 1
    # Always adding to the lesser of two keeps the spread within one or two requests.
    loads = [ep.inflight for ep in eps]
    assert max(loads) - min(loads) <= 2


def test_more_choices_sample_distinct_endpoints() -> None:
    eps = members(5)
    for ep, load in zip(eps, [9, 9, 9, 9, 0], strict=True):
        ep.inflight = load
    balancer = LeastRequestFactory(choice_count=5, rng=random.Random(6))(eps)
    assert {balancer.pick(None) for _ in range(50)} == {eps[4]}


def test_unequal_weights_follow_the_weights_when_idle() -> None:
    eps = members(2, [3, 1])
    balancer = LeastRequestFactory(rng=random.Random(7))(eps)
    assert isinstance(balancer, WeightedLeastRequest)
    seen = Counter(id(balancer.pick(None)) for _ in range(4000))
    assert seen[id(eps[0])] == 3000


def test_unequal_weights_are_divided_by_load() -> None:
    eps = members(2, [2, 1])
    eps[0].inflight = 3  # effective weight 2 / 4 = 0.5 against 1 / 1 = 1
    balancer = LeastRequestFactory(rng=random.Random(8))(eps)
    seen = Counter(id(balancer.pick(None)) for _ in range(3000))
    assert 950 <= seen[id(eps[0])] <= 1050


def test_bias_zero_ignores_load() -> None:
    eps = members(2, [2, 1])
    eps[0].inflight = 10
    balancer = LeastRequestFactory(active_request_bias=0.0, rng=random.Random(9))(eps)
    seen = Counter(id(balancer.pick(None)) for _ in range(3000))
    assert seen[id(eps[0])] == 2000


def test_single_endpoint_and_invalid_options() -> None:
    assert isinstance(LeastRequestFactory()(members(1)), SingleEndpoint)
    with pytest.raises(ValueError, match="choice_count"):
        LeastRequestFactory(choice_count=1)

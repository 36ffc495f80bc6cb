from __future__ import annotations

import random
from collections import Counter

from scipy.stats import chisquare

from routing.balancers.base import Balancer
from routing.balancers.random_choice import RandomChoice, RandomFactory
from routing.endpoints import Endpoint

PICKS = 20_000
# A chi-square p-value below this would mean the distribution is off, not bad luck (seeded anyway).
SIGNIFICANCE = 0.001


def counts(balancer: Balancer, members: list[Endpoint]) -> list[int]:
    seen = Counter(id(balancer.pick(None)) for _ in range(PICKS))
    return [seen[id(ep)] for ep in members]


def test_uniform_when_weights_are_equal() -> None:
    members = [Endpoint(host="10.0.0.1", port=9000 + i) for i in range(5)]
    observed = counts(RandomChoice(members, random.Random(7)), members)
    assert chisquare(observed).pvalue > SIGNIFICANCE
    assert min(observed) > 0


def test_proportional_to_weights() -> None:
    weights = [1, 2, 7]
    members = [Endpoint(host="10.0.0.1", port=9000 + i, weight=w) for i, w in enumerate(weights)]
    observed = counts(RandomChoice(members, random.Random(8)), members)
    expected = [PICKS * w / sum(weights) for w in weights]
    assert chisquare(observed, expected).pvalue > SIGNIFICANCE


def test_distribution_is_not_uniform_when_weights_differ() -> None:
    members = [Endpoint(host="10.0.0.1", port=9000 + i, weight=w) for i, w in enumerate([1, 9])]
    observed = counts(RandomChoice(members, random.Random(9)), members)
    assert chisquare(observed).pvalue < SIGNIFICANCE
    assert observed[1] > 8 * observed[0]


def test_slow_start_weights_override_endpoint_weights() -> None:
    members = [Endpoint(host="10.0.0.1", port=9000 + i) for i in range(2)]
    balancer = RandomFactory(random.Random(10)).weighted(members, [0.1, 0.9])
    observed = counts(balancer, members)
    assert chisquare(observed, [PICKS * 0.1, PICKS * 0.9]).pvalue > SIGNIFICANCE

"""Least request, with Envoy's semantics.

Equal weights: draw `choice_count` distinct endpoints at random and take the one with the fewest
requests in flight ("power of two choices" for the default of two). Sampling, not a full scan, keeps
each pick O(1) and avoids every gateway replica herding onto the same momentarily idle endpoint.

Unequal weights (or slow start): earliest-deadline-first scheduling where an endpoint's effective
weight is `weight / (inflight + 1) ** bias`, recomputed each time it is picked, so load skews the
configured ratio away from busy endpoints. Bias 1 is Envoy's default `active_request_bias`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.context import RequestContext
from routing.balancers.base import (
    Balancer,
    SingleEndpoint,
    all_equal,
    check_weights,
    distinct_pair,
    endpoint_weights,
    require_endpoints,
)
from routing.endpoints import Endpoint

# Two choices already give an exponential improvement over one in the maximum load (Mitzenmacher);
# more choices add little and cost more random draws. Envoy uses the same default.
DEFAULT_CHOICE_COUNT = 2
# Envoy's default active_request_bias: effective weight falls as 1 / (inflight + 1).
DEFAULT_ACTIVE_REQUEST_BIAS = 1.0


class LeastRequestP2C:
    """Equal weights: `choice_count` distinct random endpoints, fewest in-flight requests wins."""

    __slots__ = ("_choice_count", "_endpoints", "_indexes", "_n", "_rng")

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random, choice_count: int) -> None:
        self._endpoints = require_endpoints(endpoints)
        self._n = len(self._endpoints)
        if self._n < 2:
            raise ValueError("power of choices needs at least two endpoints")
        self._rng = rng
        self._choice_count = min(choice_count, self._n)
        self._indexes = range(self._n)

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        endpoints = self._endpoints
        if self._choice_count == 2:
            i, j = distinct_pair(self._n, self._rng)
            first, second = endpoints[i], endpoints[j]
            return second if second.inflight < first.inflight else first
        best: Endpoint | None = None
        for index in self._rng.sample(self._indexes, self._choice_count):
            candidate = endpoints[index]
            if best is None or candidate.inflight < best.inflight:
                best = candidate
        return best


class WeightedLeastRequest:
    """Unequal weights: earliest deadline first over weight / (inflight + 1) ** bias."""

    __slots__ = ("_bias", "_endpoints", "_heap", "_order", "_weights")

    def __init__(self, endpoints: Sequence[Endpoint], weights: Sequence[float], bias: float) -> None:
        self._endpoints = require_endpoints(endpoints)
        self._weights = check_weights(endpoints, weights)
        self._bias = bias
        # The order counter breaks deadline ties in insertion order, so equal deadlines never compare
        # endpoints and the schedule is deterministic.
        self._order = itertools.count()
        self._heap = [(1.0 / w, next(self._order), i) for i, w in enumerate(self._weights)]
        heapq.heapify(self._heap)

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        heap = self._heap
        deadline, _, index = heap[0]
        endpoint = self._endpoints[index]
        if self._bias == 1.0:
            effective = self._weights[index] / (endpoint.inflight + 1)
        else:
            effective = self._weights[index] / (endpoint.inflight + 1) ** self._bias
        heapq.heapreplace(heap, (deadline + 1.0 / effective, next(self._order), index))
        return endpoint


@dataclass(frozen=True, slots=True)
class LeastRequestFactory:
    choice_count: int = DEFAULT_CHOICE_COUNT
    active_request_bias: float = DEFAULT_ACTIVE_REQUEST_BIAS
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.choice_count < 2:
            raise ValueError("choice_count must be at least 2")
        if self.active_request_bias < 0:
            raise ValueError("active_request_bias cannot be negative")

    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer:
        if len(endpoints) == 1:
            return SingleEndpoint(endpoints[0])
        weights = endpoint_weights(endpoints)
        if all_equal(weights):
            return LeastRequestP2C(endpoints, self.rng, self.choice_count)
        return WeightedLeastRequest(endpoints, weights, self.active_request_bias)

    def weighted(self, endpoints: Sequence[Endpoint], weights: Sequence[float]) -> Balancer:
        if len(endpoints) == 1:
            return SingleEndpoint(endpoints[0])
        return WeightedLeastRequest(endpoints, weights, self.active_request_bias)

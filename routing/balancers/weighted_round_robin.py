"""Smooth weighted round robin (nginx's algorithm).

Every pick, each endpoint's running score grows by its weight; the highest score wins and pays back
the total weight. Weights 5, 1, 1 give a a b a c a a: the heavy endpoint's turns are spread through
the cycle instead of arriving as a burst of five.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gateway.core.context import RequestContext
from routing.balancers.base import Balancer, all_equal, check_weights, endpoint_weights, require_endpoints
from routing.endpoints import Endpoint


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin; weights may be fractional (slow start scales them)."""

    __slots__ = ("_current", "_endpoints", "_indexes", "_rotation", "_total", "_weights")

    def __init__(self, endpoints: Sequence[Endpoint], weights: Sequence[float] | None = None) -> None:
        self._endpoints = require_endpoints(endpoints)
        self._weights = endpoint_weights(endpoints) if weights is None else check_weights(endpoints, weights)
        self._total = sum(self._weights)
        self._current = [0.0] * len(self._endpoints)
        self._indexes = range(1, len(self._endpoints))
        # With equal weights the algorithm reduces to rotation in order; skip the O(n) scan then.
        self._rotation: Iterator[Endpoint] | None = (
            itertools.cycle(self._endpoints) if all_equal(self._weights) else None
        )

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        if self._rotation is not None:
            return next(self._rotation)
        current = self._current
        weights = self._weights
        best = 0
        best_score = current[0] + weights[0]
        current[0] = best_score
        for i in self._indexes:
            score = current[i] + weights[i]
            current[i] = score
            # Strict '>' keeps the earliest endpoint on ties, which makes the sequence deterministic.
            if score > best_score:
                best, best_score = i, score
        current[best] = best_score - self._total
        return self._endpoints[best]


@dataclass(frozen=True, slots=True)
class WeightedRoundRobinFactory:
    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer:
        return SmoothWeightedRoundRobin(endpoints)

    def weighted(self, endpoints: Sequence[Endpoint], weights: Sequence[float]) -> Balancer:
        return SmoothWeightedRoundRobin(endpoints, weights)

"""Random choice, in proportion to the endpoints' weights."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.context import RequestContext
from routing.balancers.base import Balancer, all_equal, check_weights, endpoint_weights, require_endpoints
from routing.endpoints import Endpoint


class RandomChoice:
    """Uniform choice when weights are equal, else a binary search over cumulative weights."""

    __slots__ = ("_bounds", "_endpoints", "_n", "_random", "_total")

    def __init__(
        self, endpoints: Sequence[Endpoint], rng: random.Random, weights: Sequence[float] | None = None
    ) -> None:
        self._endpoints = require_endpoints(endpoints)
        resolved = endpoint_weights(endpoints) if weights is None else check_weights(endpoints, weights)
        self._n = len(self._endpoints)
        self._random = rng.random
        self._total = sum(resolved)
        # None marks the uniform case, decided here so that pick does one test instead of a search.
        self._bounds: list[float] | None = (
            None if all_equal(resolved) else list(itertools.accumulate(resolved))
        )

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        bounds = self._bounds
        if bounds is None:
            return self._endpoints[int(self._random() * self._n)]
        index = bisect.bisect_right(bounds, self._random() * self._total)
        # Guard the float edge where random() * total rounds up to exactly the last bound.
        return self._endpoints[min(index, self._n - 1)]


@dataclass(frozen=True, slots=True)
class RandomFactory:
    rng: random.Random = field(default_factory=random.Random)

    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer:
        return RandomChoice(endpoints, self.rng)

    def weighted(self, endpoints: Sequence[Endpoint], weights: Sequence[float]) -> Balancer:
        return RandomChoice(endpoints, self.rng, weights)

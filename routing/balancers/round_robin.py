"""Plain rotation through the endpoints, one after another."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.context import RequestContext
from routing.balancers.base import Balancer, require_endpoints
from routing.balancers.weighted_round_robin import SmoothWeightedRoundRobin
from routing.endpoints import Endpoint


class RoundRobin:
    """Each endpoint in turn.

    The rotation starts at a random position: the balancer is rebuilt on every health change, and
    restarting at the first endpoint each time would hand it a burst of extra requests.
    """

    __slots__ = ("_cycle",)

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random) -> None:
        ordered = require_endpoints(endpoints)
        start = int(rng.random() * len(ordered))
        self._cycle = itertools.cycle(ordered[start:] + ordered[:start])

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        return next(self._cycle)


@dataclass(frozen=True, slots=True)
class RoundRobinFactory:
    rng: random.Random = field(default_factory=random.Random)

    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer:
        return RoundRobin(endpoints, self.rng)

    def weighted(self, endpoints: Sequence[Endpoint], weights: Sequence[float]) -> Balancer:
        # Weighted rotation keeps the round-robin character while slow start ramps an endpoint up.
        return SmoothWeightedRoundRobin(endpoints, weights)

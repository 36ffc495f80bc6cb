"""What every balancer is: a chooser built once over a fixed tuple of eligible endpoints.

The endpoint set owns membership and health. Whenever the eligible endpoints change it calls a
factory to build a fresh balancer, off the hot path, and swaps it in with one assignment; a balancer
therefore never checks health and never sees an empty tuple. `pick` is the hot path: it must not
allocate, sort or compile anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from gateway.core.context import RequestContext
from routing.endpoints import Endpoint


class Balancer(Protocol):
    """Chooses one endpoint for a request."""

    def pick(self, ctx: RequestContext | None) -> Endpoint | None: ...


BalancerFactory = Callable[[Sequence[Endpoint]], Balancer]
"""Builds a balancer over the currently eligible endpoints (never an empty sequence)."""


@runtime_checkable
class WeightedBalancerFactory(Protocol):
    """A factory that can also balance by explicit, possibly fractional, weights.

    Slow start uses it: while an endpoint ramps up, the endpoint set scales its weight down and asks
    for a weighted balancer, then returns to the plain one once every ramp has ended.
    """

    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer: ...

    def weighted(self, endpoints: Sequence[Endpoint], weights: Sequence[float]) -> Balancer: ...


def require_endpoints(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """The endpoints as a tuple; an empty set is the endpoint set's job to handle, not a balancer's."""
    if not endpoints:
        raise ValueError("a balancer needs at least one endpoint")
    return tuple(endpoints)


def check_weights(endpoints: Sequence[Endpoint], weights: Sequence[float]) -> tuple[float, ...]:
    """Weights as a tuple, one per endpoint, each above zero."""
    if len(weights) != len(endpoints):
        raise ValueError(f"{len(weights)} weights given for {len(endpoints)} endpoints")
    if any(not w > 0.0 for w in weights):
        raise ValueError("every weight must be above zero")
    return tuple(float(w) for w in weights)


def endpoint_weights(endpoints: Sequence[Endpoint]) -> tuple[float, ...]:
    """The configured weights; a weight of zero or less would never be picked, so it is refused."""
    return check_weights(endpoints, [ep.weight for ep in endpoints])


def all_equal(weights: Sequence[float]) -> bool:
    return all(w == weights[0] for w in weights)


def distinct_pair(n: int, rng: random.Random) -> tuple[int, int]:
    """Two different indexes below n (n >= 2), uniformly: the 'two choices' of p2c balancers.

    `int(random() * n)` is used instead of `randrange`, which costs several times more per call.
    """
    first = int(rng.random() * n)
    second = int(rng.random() * (n - 1))
    if second >= first:
        second += 1
    return first, second


class SingleEndpoint:
    """The trivial balancer for a set of one; the p2c balancers need two to choose between."""

    __slots__ = ("_endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        return self._endpoint


class _NoEndpoint:
    """The balancer of an empty or fully unavailable set: the endpoint set, not a balancer, decides
    that there is nothing to pick from."""

    __slots__ = ()

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        return None


NO_ENDPOINT: Balancer = _NoEndpoint()

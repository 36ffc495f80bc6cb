"""Load balancers, one module per algorithm, and the explicit map from a config name to a factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from routing.balancers.base import Balancer, BalancerFactory, WeightedBalancerFactory
from routing.balancers.consistent_hash import ConsistentHashFactory
from routing.balancers.least_queue import LeastQueueFactory
from routing.balancers.least_request import LeastRequestFactory
from routing.balancers.peak_ewma import PeakEwmaFactory
from routing.balancers.random_choice import RandomFactory
from routing.balancers.round_robin import RoundRobinFactory
from routing.balancers.weighted_round_robin import WeightedRoundRobinFactory

# Read-only: the set of balancers is fixed by this module, not by whoever imports it.
_FACTORIES: Mapping[str, Callable[..., BalancerFactory]] = MappingProxyType(
    {
        "round_robin": RoundRobinFactory,
        "weighted_round_robin": WeightedRoundRobinFactory,
        "random": RandomFactory,
        "least_request": LeastRequestFactory,
        "peak_ewma": PeakEwmaFactory,
        "consistent_hash": ConsistentHashFactory,
        "least_queue": LeastQueueFactory,
        # The same selector; the cluster's load scraper fills in what the endpoints report.
        "least_load": LeastQueueFactory,
    }
)

BALANCER_KINDS: tuple[str, ...] = tuple(_FACTORIES)


def make_balancer_factory(kind: str, **options: Any) -> BalancerFactory:
    """The factory for a balancer named in config, with its options (e.g. choice_count, key).

    Unknown kinds raise ValueError; options a balancer does not take raise TypeError.
    """
    try:
        factory_type = _FACTORIES[kind]
    except KeyError:
        raise ValueError(f"unknown balancer {kind!r}: use one of {', '.join(BALANCER_KINDS)}") from None
    return factory_type(**options)


__all__ = [
    "BALANCER_KINDS",
    "Balancer",
    "BalancerFactory",
    "WeightedBalancerFactory",
    "make_balancer_factory",
]

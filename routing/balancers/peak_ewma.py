"""Peak-EWMA power of two choices (Finagle, linkerd).

Two distinct endpoints are drawn at random; the one with the lower cost wins, where
cost = latency estimate x (requests in flight + 1). The estimate is the endpoint's peak-EWMA latency
(it jumps up at once on a slow answer and decays slowly), aged to the moment of the pick so that an
endpoint avoided after one slow answer is eventually tried again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.core.context import RequestContext
from routing.balancers.base import Balancer, SingleEndpoint, distinct_pair, require_endpoints
from routing.endpoints import DEFAULT_EWMA_DECAY_S, Endpoint

# The latency assumed for an endpoint that has not answered yet. linkerd uses 30 ms: low enough that
# a new endpoint is tried soon, high enough that it is not flooded before its first answer arrives.
DEFAULT_RTT_S = 0.030


class PeakEwma:
    __slots__ = ("_clock", "_decay", "_default_rtt", "_endpoints", "_n", "_rng")

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        rng: random.Random,
        *,
        default_rtt: float,
        decay: float,
        clock: Callable[[], float],
    ) -> None:
        self._endpoints = require_endpoints(endpoints)
        self._n = len(self._endpoints)
        if self._n < 2:
            raise ValueError("power of two choices needs at least two endpoints")
        self._rng = rng
        self._default_rtt = default_rtt
        self._decay = decay
        self._clock = clock

    def cost(self, endpoint: Endpoint, now: float) -> float:
        latency = endpoint.decayed_latency(now, self._decay)
        if latency is None:
            latency = self._default_rtt
        return latency * (endpoint.inflight + 1)

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        i, j = distinct_pair(self._n, self._rng)
        first, second = self._endpoints[i], self._endpoints[j]
        now = self._clock()
        return second if self.cost(second, now) < self.cost(first, now) else first


@dataclass(frozen=True, slots=True)
class PeakEwmaFactory:
    default_rtt: float = DEFAULT_RTT_S
    decay: float = DEFAULT_EWMA_DECAY_S
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.default_rtt <= 0 or self.decay <= 0:
            raise ValueError("default_rtt and decay must be above zero")

    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer:
        if len(endpoints) == 1:
            return SingleEndpoint(endpoints[0])
        return PeakEwma(endpoints, self.rng, default_rtt=self.default_rtt, decay=self.decay, clock=self.clock)

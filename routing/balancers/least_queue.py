"""Power of two choices by the queue depth that the endpoints themselves report.

Inference workers know better than the gateway how much work is waiting (other gateways, batches in
progress), and report it in `x-turnout-queue-depth`. An endpoint that reports nothing is judged by
its reported in-flight count, and failing that by the gateway's own in-flight count.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.context import RequestContext
from routing.balancers.base import Balancer, SingleEndpoint, distinct_pair, require_endpoints
from routing.endpoints import Endpoint


def reported_load(endpoint: Endpoint) -> int:
    """The backlog the endpoint last reported (queue depth, else in-flight count) plus what this
    gateway has in flight to it now. A report is only as fresh as the endpoint's last answer: a
    saturated endpoint answers late, so without our own in-flight count its last "idle" report
    would keep attracting traffic."""
    if endpoint.queue_depth is not None:
        return endpoint.queue_depth + endpoint.inflight
    if endpoint.reported_inflight is not None:
        return endpoint.reported_inflight + endpoint.inflight
    return endpoint.inflight


class LeastQueue:
    __slots__ = ("_endpoints", "_n", "_rng")

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random) -> None:
        self._endpoints = require_endpoints(endpoints)
        self._n = len(self._endpoints)
        if self._n < 2:
            raise ValueError("power of two choices needs at least two endpoints")
        self._rng = rng

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        i, j = distinct_pair(self._n, self._rng)
        first, second = self._endpoints[i], self._endpoints[j]
        first_load, second_load = reported_load(first), reported_load(second)
        if second_load != first_load:
            return second if second_load < first_load else first
        # A report is only as fresh as the last answer; between reports, our own in-flight count
        # breaks the tie so a burst does not all land on the endpoint that looked idle.
        return second if second.inflight < first.inflight else first


@dataclass(frozen=True, slots=True)
class LeastQueueFactory:
    rng: random.Random = field(default_factory=random.Random)

    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer:
        if len(endpoints) == 1:
            return SingleEndpoint(endpoints[0])
        return LeastQueue(endpoints, self.rng)

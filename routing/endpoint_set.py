"""The endpoints of one cluster: membership, eligibility, panic mode, slow start and the balancer.

The hot path is `pick`, one float comparison and one call into the current balancer. Everything else
(health flips, ejections, drains, membership changes, slow-start steps) calls `refresh`, which
recomputes the eligible endpoints and builds a new balancer, swapped in with one assignment.

The data path reports each request through four cheap callbacks::

    ep = cluster.pick(ctx)
    cluster.on_start(ep)                      # in flight from here
    ...  answer headers arrive:  cluster.on_success(ep, latency_s, now)
         or 5xx / connect error / reset / timeout:  cluster.on_failure(ep, now)
    cluster.on_finish(ep)                     # always, once the body is done or the call failed

In-flight accounting is apart from the outcome because a streamed answer succeeds at its headers
but occupies the endpoint until its last byte.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.core.context import RequestContext
from routing.balancers.base import NO_ENDPOINT, Balancer, BalancerFactory, WeightedBalancerFactory
from routing.endpoints import Endpoint
from routing.health.outlier import OutlierDetector
from routing.slow_start import DEFAULT_AGGRESSION, DEFAULT_MIN_WEIGHT_PERCENT, SlowStart

# Envoy's default: once fewer than half the endpoints are available, the health signal is more likely
# wrong (or the few left would be crushed) than the endpoints broken, so balance over all of them.
DEFAULT_PANIC_THRESHOLD_PERCENT = 50.0

_NEVER = math.inf


class EndpointSet:
    __slots__ = (
        "_balancer",
        "_by_address",
        "_clock",
        "_deadline",
        "_eligible",
        "_factory",
        "_members",
        "_outlier",
        "_panic",
        "_panic_threshold",
        "_slow_start",
        "_version",
        "_weighted_factory",
        "name",
    )

    def __init__(
        self,
        name: str,
        endpoints: Sequence[Endpoint],
        balancer_factory: BalancerFactory,
        *,
        panic_threshold_percent: float = DEFAULT_PANIC_THRESHOLD_PERCENT,
        slow_start: float = 0.0,
        slow_start_aggression: float = DEFAULT_AGGRESSION,
        slow_start_min_weight_percent: float = DEFAULT_MIN_WEIGHT_PERCENT,
        outlier: OutlierDetector | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= panic_threshold_percent <= 100:
            raise ValueError("panic_threshold_percent must be between 0 and 100")
        if slow_start < 0:
            raise ValueError("the slow start window cannot be negative (0 turns it off)")
        self._slow_start: SlowStart | None = None
        self._weighted_factory: WeightedBalancerFactory | None = None
        if slow_start > 0:
            self._slow_start = SlowStart(slow_start, slow_start_aggression, slow_start_min_weight_percent)
            if not isinstance(balancer_factory, WeightedBalancerFactory):
                raise ValueError(
                    "slow start needs a balancer that can weight endpoints "
                    "(round_robin, weighted_round_robin, random, least_request)"
                )
            self._weighted_factory = balancer_factory
        self.name = name
        self._factory = balancer_factory
        self._panic_threshold = float(panic_threshold_percent)
        self._outlier = outlier
        self._clock = clock
        self._members: list[Endpoint] = []
        self._by_address: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            self._admit(endpoint)
        self._version = 0
        self._balancer: Balancer = NO_ENDPOINT
        self._eligible: tuple[Endpoint, ...] = ()
        self._panic = False
        self._deadline = _NEVER
        self.refresh()

    # -- hot path ---------------------------------------------------------------------------------

    def pick(self, ctx: RequestContext | None, avoid: Endpoint | None = None) -> Endpoint | None:
        """An endpoint for this request, or None when the set has none to offer. `avoid` (where a
        retry's previous attempt failed) is picked only when no other endpoint is eligible."""
        deadline = self._deadline
        if deadline != _NEVER and self._clock() >= deadline:
            self.refresh()
        endpoint = self._balancer.pick(ctx)
        if avoid is not None and endpoint is avoid:
            return self._other_than(avoid, ctx)
        return endpoint

    def _other_than(self, failed: Endpoint, ctx: RequestContext | None) -> Endpoint:
        """Like Envoy's previous_hosts retry predicate, but certain: the balancer's next choice,
        else the first other eligible endpoint; `failed` itself only when it is alone."""
        other = self._balancer.pick(ctx)
        if other is not None and other is not failed:
            return other
        for endpoint in self._eligible:
            if endpoint is not failed:
                return endpoint
        return failed

    def on_start(self, endpoint: Endpoint) -> None:
        endpoint.inflight += 1
        endpoint.total_requests += 1

    def on_finish(self, endpoint: Endpoint) -> None:
        endpoint.inflight -= 1

    def on_success(self, endpoint: Endpoint, latency_s: float, now: float) -> None:
        endpoint.consecutive_failures = 0
        endpoint.observe_latency(latency_s, now)

    def on_failure(self, endpoint: Endpoint, now: float) -> None:
        """A 5xx answer, refused connection, reset or timeout; may eject the endpoint."""
        endpoint.total_failures += 1
        endpoint.consecutive_failures += 1
        outlier = self._outlier
        if (
            outlier is not None
            and endpoint.consecutive_failures >= outlier.consecutive_failures
            and self._by_address.get(endpoint.address) is endpoint
            and outlier.on_failure(endpoint, self._members, now)
        ):
            self.refresh(now)

    def on_load_report(self, endpoint: Endpoint, queue_depth: int | None, inflight: int | None) -> None:
        """What the endpoint said about its own load (x-turnout-queue-depth, x-turnout-inflight)."""
        endpoint.queue_depth = queue_depth
        endpoint.reported_inflight = inflight

    # -- eligibility ------------------------------------------------------------------------------

    def refresh(self, now: float | None = None) -> None:
        """Recompute the eligible endpoints and swap in a balancer built over them."""
        if now is None:
            now = self._clock()
        members = self._members
        available = [ep for ep in members if ep.is_available(now)]
        panic = bool(members) and len(available) * 100 < self._panic_threshold * len(members)
        # In panic every endpoint takes traffic again, except those an operator drained on purpose.
        pool = [ep for ep in members if not ep.drained] if panic else available
        deadline = min((ep.ejected_until for ep in members if ep.ejected_until > now), default=_NEVER)
        balancer: Balancer = NO_ENDPOINT
        if pool:
            slow_start = self._slow_start
            weights = slow_start.weights(pool, now) if slow_start is not None else None
            if weights is not None and slow_start is not None and self._weighted_factory is not None:
                balancer = self._weighted_factory.weighted(pool, weights)
                deadline = min(deadline, now + slow_start.step)
            else:
                balancer = self._factory(pool)
        self._eligible = tuple(pool)
        self._panic = panic
        self._deadline = deadline
        self._balancer = balancer

    def set_active_health(self, endpoint: Endpoint, healthy: bool) -> None:
        """The active health checker's verdict; an endpoint that returns starts its slow start."""
        if endpoint.active_healthy == healthy:
            return
        endpoint.active_healthy = healthy
        now = self._clock()
        if healthy:
            endpoint.available_since = now
        self.refresh(now)

    # -- membership -------------------------------------------------------------------------------

    def _admit(self, endpoint: Endpoint) -> None:
        address = endpoint.address
        if address in self._by_address:
            raise ValueError(f"{self.name}: endpoint {address} is already a member")
        self._members.append(endpoint)
        self._by_address[address] = endpoint

    def add(self, endpoint: Endpoint) -> None:
        """A new member; it starts its slow start now. Raises ValueError if the address is known."""
        self._admit(endpoint)
        endpoint.available_since = self._clock()
        self._version += 1
        self.refresh()

    def remove(self, address: str) -> Endpoint | None:
        """Stop sending new requests to an address; requests in flight finish normally."""
        endpoint = self._by_address.pop(address, None)
        if endpoint is None:
            return None
        self._members.remove(endpoint)
        self._version += 1
        self.refresh()
        return endpoint

    def replace_all(self, endpoints: Sequence[Endpoint]) -> None:
        """Set the members to these; endpoints whose address stays keep their objects (and so their
        health, in-flight and latency state), taking the new weight."""
        now = self._clock()
        members: list[Endpoint] = []
        by_address: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            address = endpoint.address
            if address in by_address:
                continue
            kept = self._by_address.get(address)
            if kept is not None:
                kept.weight = endpoint.weight
                kept.hostname = endpoint.hostname
                endpoint = kept
            else:
                endpoint.available_since = now
            members.append(endpoint)
            by_address[address] = endpoint
        if members != self._members:
            self._version += 1
        self._members = members
        self._by_address = by_address
        self.refresh(now)

    def adopt_state_from(self, old: EndpointSet) -> None:
        """After a config reload, take over the old set's endpoint objects for the addresses both have.

        Sharing the objects, rather than copying their fields, keeps in-flight counts right: requests
        started under the old config finish on those same objects.
        """
        for index, endpoint in enumerate(self._members):
            previous = old._by_address.get(endpoint.address)
            if previous is None or previous is endpoint:
                continue
            previous.weight = endpoint.weight
            previous.hostname = endpoint.hostname
            self._members[index] = previous
            self._by_address[endpoint.address] = previous
        self._version += 1
        self.refresh()

    def drain(self, address: str) -> bool:
        """No new requests to this address; False when it is not a member."""
        return self._set_drained(address, True)

    def undrain(self, address: str) -> bool:
        return self._set_drained(address, False)

    def _set_drained(self, address: str, drained: bool) -> bool:
        endpoint = self._by_address.get(address)
        if endpoint is None:
            return False
        if endpoint.drained != drained:
            endpoint.drained = drained
            self.refresh()
        return True

    # -- views ------------------------------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(self._members)

    @property
    def eligible(self) -> tuple[Endpoint, ...]:
        """The endpoints the current balancer chooses from."""
        return self._eligible

    @property
    def in_panic(self) -> bool:
        return self._panic

    @property
    def version(self) -> int:
        """Goes up on every membership change, so watchers (the health checker) can follow."""
        return self._version

    def get(self, address: str) -> Endpoint | None:
        return self._by_address.get(address)

    def snapshot(self) -> list[dict[str, Any]]:
        """Per-endpoint state for the admin API."""
        now = self._clock()
        return [
            {
                "address": ep.address,
                "hostname": ep.hostname,
                "weight": ep.weight,
                "healthy": ep.active_healthy,
                "available": ep.is_available(now),
                "ejected": now < ep.ejected_until,
                "ejected_seconds_left": max(ep.ejected_until - now, 0.0),
                "ejection_count": ep.ejection_count,
                "drained": ep.drained,
                "inflight": ep.inflight,
                "ewma_ms": ep.ewma_latency * 1000.0,
                "queue_depth": ep.queue_depth,
                "total_requests": ep.total_requests,
                "total_failures": ep.total_failures,
            }
            for ep in self._members
        ]

"""A cluster at run time: its endpoint set, connection pools, circuit breaker, retry budget and the
background tasks (health checks, DNS) that keep its endpoint set true."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.http.upstream import EndpointPool
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.resilience.circuit_breaker import CircuitBreaker
from routing.resilience.retry import RetryPolicy


class BackgroundTask(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_connections: int
    connect_timeout: float
    idle_timeout: float


@dataclass(eq=False)
class ClusterRuntime:
    name: str
    protocol: str
    endpoints: EndpointSet
    breaker: CircuitBreaker
    retry: RetryPolicy
    request_timeout: float
    pool_settings: PoolSettings
    fingerprint: str
    """A digest of the cluster's config: a reload keeps this object when it is unchanged."""
    background: Sequence[BackgroundTask] = ()
    pools: dict[str, EndpointPool] = field(default_factory=dict)
    breaker_rejections: int = 0
    retries: int = 0

    def pool_for(self, endpoint: Endpoint) -> EndpointPool:
        address = endpoint.address
        pool = self.pools.get(address)
        if pool is None:
            settings = self.pool_settings
            pool = EndpointPool(
                asyncio.get_running_loop(),
                endpoint.host,
                endpoint.port,
                settings.max_connections,
                settings.connect_timeout,
                settings.idle_timeout,
            )
            self.pools[address] = pool
        return pool

    async def start(self) -> None:
        for task in self.background:
            await task.start()

    async def stop(self) -> None:
        for task in reversed(self.background):
            with contextlib.suppress(Exception):
                await task.stop()
        for pool in self.pools.values():
            pool.close()

    def close_idle(self, now: float) -> None:
        """Close pooled connections past their idle timeout, and pools of endpoints that left."""
        current = {ep.address for ep in self.endpoints.endpoints}
        for address, pool in list(self.pools.items()):
            pool.close_expired(now)
            if address not in current and pool.open_connections == 0:
                pool.close()
                del self.pools[address]

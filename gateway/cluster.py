"""A cluster at run time: its endpoint set, connection pools, circuit breaker, retry budget and the
background tasks (health checks, DNS) that keep its endpoint set true."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.http.pool import EndpointPool
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.resilience.circuit_breaker import CircuitBreaker
from routing.resilience.model_errors import ModelErrorPolicy
from routing.resilience.retry import RetryPolicy

# How often overdue upstream responses are looked for: the precision of request timeouts. One sweep
# per cluster every 10 ms costs far less than arming and cancelling a timer for every request; with
# no exchange in flight the sweeper sleeps until the next one starts, so an idle cluster never wakes.
DEADLINE_TICK_S = 0.01


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
    model_errors: ModelErrorPolicy | None = None
    """Which 5xx answers are a model's error (the request's fault), never charged to the endpoint."""
    prefix_affinity: int | None = None
    """OpenAI clusters: requests whose prompts share this many first characters go to one endpoint."""
    pools: dict[str, EndpointPool] = field(default_factory=dict)
    breaker_rejections: int = 0
    retries: int = 0
    _sweeper: asyncio.Task[None] | None = None
    _resume_sweeper: Callable[[], None] | None = None
    """Set while the sweeper sleeps: what an exchange starting on any of the pools calls."""

    @property
    def deadline_sweeper_asleep(self) -> bool:
        """No exchange is in flight, so the sweeper of overdue responses waits for the next one."""
        return self._resume_sweeper is not None

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
            pool.wake_sweeper = self._resume_sweeper
            self.pools[address] = pool
        return pool

    async def start(self) -> None:
        for task in self.background:
            await task.start()
        self._sweeper = asyncio.create_task(self._sweep_deadlines())

    async def _sweep_deadlines(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(DEADLINE_TICK_S)
            now = loop.time()
            waiting = False
            for pool in list(self.pools.values()):
                if pool.check_deadlines(now):
                    waiting = True
            if not waiting:
                await self._sleep_until_an_exchange()

    async def _sleep_until_an_exchange(self) -> None:
        """Park the sweeper until an exchange starts on one of the pools (decided in the same step as
        the sweep that found none in flight, so none can start unseen in between)."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def resume() -> None:
            self._resume_sweeper = None
            for pool in self.pools.values():
                pool.wake_sweeper = None
            if not woken.done():
                woken.set_result(None)

        self._resume_sweeper = resume
        for pool in self.pools.values():
            pool.wake_sweeper = resume
        try:
            await woken
        finally:
            if self._resume_sweeper is resume:  # cancelled while parked (the cluster stops)
                resume()

    async def stop(self) -> None:
        """Stop health checks and discovery and close idle connections. Requests still in flight keep
        their connections (closed when released) and their timeouts until they finish."""
        for task in reversed(self.background):
            with contextlib.suppress(Exception):
                await task.stop()
        for pool in self.pools.values():
            pool.close()
        if self._sweeper is not None:
            sweeper, self._sweeper = self._sweeper, None
            asyncio.get_running_loop().call_later(self.request_timeout + 1.0, sweeper.cancel)

    def close_idle(self, now: float) -> None:
        """Close pooled connections past their idle timeout, and pools of endpoints that left."""
        current = {ep.address for ep in self.endpoints.endpoints}
        for address, pool in list(self.pools.items()):
            pool.close_expired(now)
            if address not in current and pool.open_connections == 0:
                pool.close()
                del self.pools[address]

"""The response-cache filter: answer from the cache, merge identical requests in flight, store 2xx.

Request phase, for a cacheable method:
  `Cache-Control: no-store`  -> neither looked up nor stored (x-turnout-cache: bypass);
  a stored answer            -> answered at once (hit), unless the client sent `no-cache`;
  an identical request in flight -> wait for its answer (coalesced), or go upstream when it fails;
  otherwise                  -> go upstream (miss); the first such request leads the flight.
Response phase: a miss stores a storable answer (see `entry`), and the leader hands it to its
followers before the store, so they never wait on the backend. The logging phase releases the
followers of a leader that never got a response. Entries are keyed per `keys`.

The experiment arm is part of the key, so it must be known when the key is made. If the arm was
assigned only after this filter's request phase, the answer is neither stored nor shared: that
would serve one arm's answers to the other's callers.

`invalidate(model)` drops the model's entries (all for None) and also stops answers already in
flight from being stored, since they may predate whatever made the entries stale.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar, Protocol

from gateway.core.context import RequestContext
from gateway.core.filters import Decision, Filter, Response
from plugins._redis import RedisUnavailable
from plugins.cache.entry import CACHE_HEADER, CachedResponse, directives, storable
from plugins.cache.keys import CacheKey, CacheKeyBuilder
from plugins.cache.metrics import FILTER_NAME, CacheMetrics
from plugins.cache.single_flight import SingleFlight

_BYPASS = "bypass"


class CacheStore(Protocol):
    """Where answers are kept: `MemoryCacheStore` or `RedisCacheStore`."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def get(self, key: CacheKey) -> CachedResponse | None: ...
    async def put(self, key: CacheKey, entry: CachedResponse) -> bool: ...
    async def invalidate(self, model: str | None) -> int: ...


@dataclass(slots=True)
class _Ticket:
    """What the request phase decided, for the response and logging phases."""

    key: CacheKey
    arm: str | None
    generation: int
    leader: bool
    served: bool = False
    """Answered by this filter (hit or coalesced): nothing to store."""


class CacheFilter(Filter):
    name = FILTER_NAME
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True
    needs_request_body: ClassVar[bool] = True
    needs_response_body: ClassVar[bool] = True
    needs_experiment_arm: ClassVar[bool] = True
    __slots__ = (
        "_coalesce",
        "_coalesce_timeout",
        "_flights",
        "_generation",
        "_keys",
        "_methods",
        "_metrics",
        "_store",
    )

    def __init__(
        self,
        store: CacheStore,
        keys: CacheKeyBuilder,
        metrics: CacheMetrics,
        *,
        methods: Collection[str],
        coalesce: bool,
        coalesce_timeout: float,
    ) -> None:
        self._store = store
        self._keys = keys
        self._metrics = metrics
        self._methods = frozenset(methods)
        self._coalesce = coalesce
        self._coalesce_timeout = coalesce_timeout
        self._flights = SingleFlight()
        self._generation = 0

    async def on_request(self, ctx: RequestContext) -> Decision:
        if ctx.method not in self._methods:
            return None
        control = directives(ctx.headers.get("cache-control"))
        lookups = self._metrics.lookups
        if "no-store" in control:
            ctx.state[FILTER_NAME] = _BYPASS
            lookups["bypass"].inc()
            return None
        key = self._keys.key(ctx)
        ticket = _Ticket(key, ctx.arm, self._generation, leader=False)
        ctx.state[FILTER_NAME] = ticket
        if "no-cache" not in control:
            entry = await self._lookup(key)
            if entry is not None:
                ticket.served = True
                lookups["hit"].inc()
                return entry.response("hit")
            flight = self._flights.in_flight(key.value) if self._coalesce else None
            if flight is not None:
                shared = await SingleFlight.follow(flight, self._coalesce_timeout)
                if shared is not None:
                    ticket.served = True
                    lookups["coalesced"].inc()
                    return shared.response("coalesced")
                lookups["miss"].inc()  # the leader's answer was not shareable: go upstream alone
                return None
        ticket.leader = self._coalesce and self._flights.lead(key.value)
        lookups["miss"].inc()
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> None:
        ticket = ctx.state.get(FILTER_NAME)
        if ticket is None:
            return
        if ticket is _BYPASS:
            response.set_header(CACHE_HEADER, _BYPASS)
            return
        if ticket.served:
            return
        entry = storable(response)
        if entry is not None and (ticket.arm != ctx.arm or ticket.generation != self._generation):
            entry = None  # keyed without the arm it was answered by, or invalidated while in flight
        response.set_header(CACHE_HEADER, "miss")
        if ticket.leader:
            ticket.leader = False
            self._flights.finish(ticket.key.value, entry)
        if entry is not None and await self._put(ticket.key, entry):
            self._metrics.stores.inc()

    def on_log(self, ctx: RequestContext) -> None:
        ticket = ctx.state.get(FILTER_NAME)
        if isinstance(ticket, _Ticket) and ticket.leader:
            ticket.leader = False
            self._flights.finish(ticket.key.value, None)

    async def invalidate(self, model: str | None) -> int:
        """Drop the stored answers of `model` (of every model for None); returns how many."""
        self._generation += 1
        return await self._store.invalidate(model)

    async def start(self) -> None:
        await self._store.start()

    async def stop(self) -> None:
        await self._store.stop()

    async def _lookup(self, key: CacheKey) -> CachedResponse | None:
        try:
            return await self._store.get(key)
        except RedisUnavailable:
            return None  # the guard counted and logged it; a cache that cannot answer is empty

    async def _put(self, key: CacheKey, entry: CachedResponse) -> bool:
        try:
            return await self._store.put(key, entry)
        except RedisUnavailable:
            return False

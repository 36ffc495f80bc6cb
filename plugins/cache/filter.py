"""The response-cache filter: answer from the cache, merge identical requests in flight, store 2xx.

Request phase, for a cacheable method:
  `Cache-Control: no-store`  -> neither looked up nor stored (x-turnout-cache: bypass);
  a stored answer            -> answered at once (hit), unless the client sent `no-cache`;
  an identical request in flight -> wait for its answer (coalesced), or go upstream when it fails;
  otherwise                  -> go upstream (miss); the first such request leads the flight.
Response phase: a miss stores a storable answer (see `entry`), and the leader hands it to its
followers before the store, so they never wait on the backend. The logging phase releases the
followers of a leader that never got a response. Entries are keyed per `keys`.

Credentials (RFC 9111 3.5). A request with credentials (a principal established by an authentication
filter, whose credential header is usually removed by then, or an `Authorization` or `Cookie`
header) may get an answer meant for that caller alone. RFC 9111 names Authorization; a cookie
identifies a caller just as well, except the `shared_cookies` (by default the experiments' unit
cookie, whose arm is already in the key). Without `vary_on`, such a request is *private*: it is
answered from the cache, by a stored or coalesced answer, only when that answer allows shared use
(`public`, `s-maxage`, `must-revalidate`), and its own answer is stored or shared only when it
allows it too. With `vary_on: [principal]` and/or `[tenant]`, the caller is part of the key (the
tenant always is; `principal` adds the principal's id), so a request whose principal (and tenant,
when asked for) is known is cached as usual, per caller; one without stays private.
A principal that appears only after this filter's request phase (an authentication filter placed
after it) was not in the key: that answer is not stored.

The experiment arm is part of the key, so it must be known when the key is made. If the arm was
assigned only after this filter's request phase, the answer is neither stored nor shared: that
would serve one arm's answers to the other's callers.

OpenAI completions (`gateway/core/protocols/openai.py`): a request that samples (temperature above
0) bypasses the cache unless `store_sampled`; a server-sent event stream passes as it arrives and is
never stored unless `store_streams`; a completion answered from the cache (hit or coalesced) gets a
fresh `id` and `created`, as a new completion would.

`invalidate(model)` drops the model's entries (all for None) and also stops answers already in
flight from being stored, since they may predate whatever made the entries stale.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import ClassVar, Protocol

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import Decision, Filter, Response
from gateway.core.protocols.openai import is_sampled, looks_like_completion, read_request, with_fresh_id
from plugins._redis import RedisUnavailable
from plugins.cache.body_memo import BodyMemo
from plugins.cache.entry import CACHE_HEADER, CachedResponse, directives, shared_use_allowed, storable
from plugins.cache.keys import CacheKey, CacheKeyBuilder
from plugins.cache.memory_store import MemoryCacheStore
from plugins.cache.metrics import FILTER_NAME, CacheMetrics
from plugins.cache.single_flight import Flight, SingleFlight

_BYPASS = "bypass"


class CacheStore(Protocol):
    """Where answers are kept: `MemoryCacheStore` or `RedisCacheStore`."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def get(self, key: CacheKey) -> CachedResponse | None: ...
    async def put(self, key: CacheKey, entry: CachedResponse) -> bool: ...
    async def invalidate(self, model: str | None) -> int: ...


class ImmediateCacheStore(Protocol):
    """A store in this process that answers at once (`MemoryCacheStore`): the filter then looks up
    and stores without awaiting, so the chain stays on its synchronous fast path."""

    def get_now(self, key: CacheKey) -> CachedResponse | None: ...
    def put_now(self, key: CacheKey, entry: CachedResponse) -> bool: ...


@dataclass(slots=True)
class _Ticket:
    """What the request phase decided, for the response and logging phases."""

    key: CacheKey
    arm: str | None
    principal: Principal | None
    generation: int
    leader: bool
    private: bool
    """The request has credentials its key does not name: only answers allowing shared use."""
    served: bool = False
    """Answered by this filter (hit or coalesced): nothing to store."""
    completion: bool = False
    """An OpenAI completion: answered from the cache with a fresh id."""


class CacheFilter(Filter):
    name = FILTER_NAME
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True
    needs_request_body: ClassVar[bool] = True
    needs_response_body: ClassVar[bool] = True
    needs_experiment_arm: ClassVar[bool] = True
    __slots__ = (
        "_by_principal",
        "_by_tenant",
        "_coalesce",
        "_coalesce_timeout",
        "_flights",
        "_generation",
        "_immediate",
        "_keys",
        "_looks_like_completion",
        "_methods",
        "_metrics",
        "_store",
        "_store_sampled",
        "_store_streams",
        "buffers_event_streams",
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
        vary_on: Collection[str] = (),
        shared_cookies: Collection[str] = (),
        store_streams: bool = False,
        store_sampled: bool = False,
    ) -> None:
        self._store = store
        # Decided here, not per request: whether lookups and stores complete without awaiting.
        self._immediate: ImmediateCacheStore | None = store if isinstance(store, MemoryCacheStore) else None
        self._store_streams = store_streams
        self.buffers_event_streams = store_streams
        self._store_sampled = store_sampled
        self._shared_cookies = frozenset(shared_cookies)
        self._by_principal = "principal" in vary_on
        self._by_tenant = "tenant" in vary_on
        self._keys = keys
        # Searching a 16 KB body for the completion fields costs 7 to 20 µs: remembered with the
        # body's canonical form where the key builder keeps those, since the body's hash is then paid.
        self._looks_like_completion: Callable[[bytes], bool] = (
            BodyMemo(looks_like_completion) if keys.remembers_bodies else looks_like_completion
        )
        self._metrics = metrics
        self._methods = frozenset(methods)
        self._coalesce = coalesce
        self._coalesce_timeout = coalesce_timeout
        self._flights = SingleFlight()
        self._generation = 0

    def on_request(self, ctx: RequestContext) -> Decision | Awaitable[Decision]:
        """Plain, so that an in-process store decides a hit or a miss without leaving the chain's
        synchronous fast path; an awaitable only for a store that must be awaited (Redis) or to
        follow an identical request in flight."""
        if ctx.method not in self._methods:
            return None
        control = directives(ctx.headers.get("cache-control"))
        lookups = self._metrics.lookups
        if "no-store" in control:
            ctx.state[FILTER_NAME] = _BYPASS
            lookups["bypass"].inc()
            return None
        body = ctx.body
        completion = body is not None and self._looks_like_completion(body)
        if completion and body is not None:
            try:
                document, _ = read_request(body)
            except Exception:  # not an OpenAI body after all: cached as any other
                completion = False
            else:
                if not self._store_sampled and is_sampled(document):
                    ctx.state[FILTER_NAME] = _BYPASS
                    lookups["bypass"].inc()
                    return None
        key = self._keys.key(ctx)
        private = self._private(ctx)
        ticket = _Ticket(key, ctx.arm, ctx.principal, self._generation, leader=False, private=private)
        ticket.completion = completion
        ctx.state[FILTER_NAME] = ticket
        if "no-cache" in control:
            self._go_upstream(ticket)
            return None
        store = self._immediate
        if store is None:
            return self._look_up(ticket)
        return self._found(ticket, store.get_now(key))

    async def _look_up(self, ticket: _Ticket) -> Decision:
        """The lookup in a store that must be awaited, then as `_found`."""
        decision = self._found(ticket, await self._lookup(ticket.key))
        if decision is None or isinstance(decision, Response):
            return decision
        return await decision

    def _found(self, ticket: _Ticket, entry: CachedResponse | None) -> Decision | Awaitable[Decision]:
        """What a lookup found decides: a hit, following an identical request in flight, or upstream."""
        if entry is not None and (not ticket.private or shared_use_allowed(entry.headers)):
            ticket.served = True
            self._metrics.lookups["hit"].inc()
            return _renewed(entry.response("hit"), ticket.completion)
        flight = self._flights.in_flight(ticket.key.value) if self._coalesce else None
        if flight is not None:
            return self._follow(ticket, flight)
        self._go_upstream(ticket)
        return None

    async def _follow(self, ticket: _Ticket, flight: Flight) -> Decision:
        shared = await SingleFlight.follow(flight, self._coalesce_timeout)
        lookups = self._metrics.lookups
        if shared is not None and (not ticket.private or shared_use_allowed(shared.headers)):
            ticket.served = True
            lookups["coalesced"].inc()
            return _renewed(shared.response("coalesced"), ticket.completion)
        lookups["private" if ticket.private else "miss"].inc()  # the leader's answer was not shareable
        return None  # go upstream alone

    def _go_upstream(self, ticket: _Ticket) -> None:
        """A miss: the request goes upstream, leading the flight for its key when it is the first."""
        ticket.leader = self._coalesce and self._flights.lead(ticket.key.value)
        self._metrics.lookups["private" if ticket.private else "miss"].inc()

    def on_response(self, ctx: RequestContext, response: Response) -> Awaitable[None] | None:
        """Plain, so a streamed answer (nothing to store) passes on its head; an awaitable only when
        there is an answer to store."""
        ticket = ctx.state.get(FILTER_NAME)
        if ticket is None:
            return None
        if ticket is _BYPASS:
            response.set_header(CACHE_HEADER, _BYPASS)
            return None
        if ticket.served:
            return None
        entry = storable(response)
        if entry is not None and not self._store_streams and _is_event_stream(response):
            entry = None
        if entry is not None and (
            ticket.arm != ctx.arm
            or ticket.generation != self._generation
            or ticket.principal is not ctx.principal
            or (ticket.private and not shared_use_allowed(entry.headers))
        ):
            # Keyed without the arm or the caller it was answered for, invalidated while in flight,
            # or an answer for one caller that does not allow sharing.
            entry = None
        response.set_header(CACHE_HEADER, "miss")
        if ticket.leader:
            ticket.leader = False
            self._flights.finish(ticket.key.value, entry)
        if entry is None:
            return None
        store = self._immediate
        if store is None:
            return self._store_entry(ticket.key, entry)
        if store.put_now(ticket.key, entry):
            self._metrics.stores.inc()
        return None

    async def _store_entry(self, key: CacheKey, entry: CachedResponse) -> None:
        if await self._put(key, entry):
            self._metrics.stores.inc()

    def on_log(self, ctx: RequestContext) -> None:
        ticket = ctx.state.get(FILTER_NAME)
        if isinstance(ticket, _Ticket) and ticket.leader:
            ticket.leader = False
            self._flights.finish(ticket.key.value, None)

    def _private(self, ctx: RequestContext) -> bool:
        """Whether the request has credentials that its key does not stand for (see above)."""
        principal = ctx.principal
        if principal is None:
            headers = ctx.headers
            if "authorization" in headers:
                return True
            cookie = headers.get("cookie")
            return cookie is not None and self._cookie_identifies_caller(cookie)
        if self._by_principal:
            return self._by_tenant and principal.tenant is None
        return not (self._by_tenant and principal.tenant is not None)

    def _cookie_identifies_caller(self, cookie: str) -> bool:
        """Whether a Cookie header holds any cookie besides the configured shared ones."""
        if not self._shared_cookies:
            return True
        for pair in cookie.split(";"):
            name = pair.partition("=")[0].strip()
            if name and name not in self._shared_cookies:
                return True
        return False

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


def _renewed(response: Response, completion: bool) -> Response:
    """A completion served again gets the id and time of a new one."""
    if completion and response.body:
        response.body = with_fresh_id(response.body, time.time())
    return response


def _is_event_stream(response: Response) -> bool:
    content_type = response.header("content-type")
    return content_type is not None and content_type.lstrip().lower().startswith("text/event-stream")

"""The response cache in process: single flight, keys, what is stored, bounds, TTL, invalidation.

`through` plays the data path: the request phase, the upstream unless the filter answered, the
response phase, then the logging phase (which always runs, even when the upstream failed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Decision, Response
from plugins.cache import FACTORY, CacheConfig, CacheFilter
from plugins.cache.keys import CacheKeyBuilder


class Upstream:
    """A fake model server: counts calls, answers after `delay` with a body naming the call."""

    def __init__(
        self, status: int = 200, delay: float = 0.01, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.status = status
        self.delay = delay
        self.headers = headers or []
        self.calls = 0

    async def __call__(self, ctx: RequestContext) -> Response:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(self.delay)
        headers = [("content-type", "application/json"), ("content-length", "99"), *self.headers]
        return Response(self.status, headers, orjson.dumps({"call": call, "model": ctx.model}))


class UpstreamFailed(Exception):
    pass


def build(registry: CollectorRegistry | None = None, **options: Any) -> CacheFilter:
    built = FACTORY(CacheConfig.model_validate(options), BuildContext("infer", "up", registry))
    assert isinstance(built, CacheFilter)
    return built


def request(
    body: bytes | None = b'{"inputs": [1, 2]}',
    *,
    model: str = "m",
    tenant: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    arm: str | None = None,
) -> RequestContext:
    # Anonymous unless a tenant is named: a request with credentials is cached only with `vary_on`.
    principal = None if tenant is None else Principal("caller", tenant=tenant)
    ctx = RequestContext(
        method, f"/v2/models/{model}/infer", "", headers or {}, "10.0.0.1", 0.0, principal=principal
    )
    ctx.route, ctx.model, ctx.body, ctx.arm = "infer", model, body, arm
    return ctx


async def decided(result: Decision | Awaitable[Decision]) -> Decision:
    """What a request phase decided: its plain answer, or what its awaitable gives."""
    if result is None or isinstance(result, Response):
        return result
    return await result


async def through(
    cache: CacheFilter,
    ctx: RequestContext,
    upstream: Callable[[RequestContext], Any],
    before_response: Callable[[RequestContext], None] | None = None,
) -> Response:
    try:
        answer = await decided(cache.on_request(ctx))
        if answer is None:
            if before_response is not None:
                before_response(ctx)
            response: Response = await upstream(ctx)
        else:
            response = answer
        storing = cache.on_response(ctx, response)  # an awaitable only when there is an answer to store
        if storing is not None:
            await storing
        return response
    finally:
        cache.on_log(ctx)


def lookups(registry: CollectorRegistry, result: str) -> float:
    return (
        registry.get_sample_value("turnout_cache_lookups_total", {"route": "infer", "result": result}) or 0.0
    )


async def test_a_hundred_identical_requests_make_one_upstream_call() -> None:
    registry = CollectorRegistry()
    cache = build(registry)
    upstream = Upstream(delay=0.05)
    responses = await asyncio.gather(*(through(cache, request(), upstream) for _ in range(100)))
    assert upstream.calls == 1
    outcomes = [response.header("x-turnout-cache") for response in responses]
    assert outcomes.count("miss") == 1 and outcomes.count("coalesced") == 99
    assert {response.body for response in responses} == {orjson.dumps({"call": 1, "model": "m"})}
    assert lookups(registry, "coalesced") == 99 and lookups(registry, "miss") == 1
    later = await through(cache, request(), upstream)
    assert later.header("x-turnout-cache") == "hit" and upstream.calls == 1
    assert later.header("age") == "0"
    assert registry.get_sample_value("turnout_cache_stores_total", {"route": "infer"}) == 1


async def test_the_memory_store_decides_without_awaiting() -> None:
    registry = CollectorRegistry()
    cache = build(registry)
    first = request()
    assert cache.on_request(first) is None  # a miss, decided plain: the chain stays synchronous
    answer = Response(200, [("content-type", "application/json")], b'{"call": 1}')
    assert cache.on_response(first, answer) is None  # stored at once, nothing to await
    cache.on_log(first)
    assert answer.header("x-turnout-cache") == "miss" and lookups(registry, "miss") == 1
    hit = cache.on_request(request())
    assert isinstance(hit, Response) and hit.body == b'{"call": 1}'
    assert hit.header("x-turnout-cache") == "hit" and lookups(registry, "hit") == 1
    # An identical request in flight is followed, which needs an awaitable.
    leader, follower = request(b"{}"), request(b"{}")
    assert cache.on_request(leader) is None
    following = cache.on_request(follower)
    assert following is not None and not isinstance(following, Response)
    assert cache.on_response(leader, Response(200, [("content-type", "application/json")], b"{}")) is None
    shared = await following
    assert isinstance(shared, Response) and shared.header("x-turnout-cache") == "coalesced"


async def test_followers_get_copies_they_can_change_alone() -> None:
    cache = build()
    upstream = Upstream(delay=0.02)
    first, second = await asyncio.gather(
        through(cache, request(), upstream), through(cache, request(), upstream)
    )
    second.set_header("x-extra", "1")
    assert first.header("x-extra") is None
    hit = await through(cache, request(), upstream)
    assert hit.header("x-extra") is None


async def test_json_bodies_share_a_key_whatever_their_key_order_and_spacing() -> None:
    cache = build()
    upstream = Upstream()
    await through(cache, request(b'{"inputs": [{"name": "x", "data": [1, 2]}], "id": "a"}'), upstream)
    same = await through(cache, request(b'{"id":"a","inputs":[{"data":[1,2],"name":"x"}]}'), upstream)
    assert same.header("x-turnout-cache") == "hit"
    other = await through(cache, request(b'{"id":"a","inputs":[{"data":[1,3],"name":"x"}]}'), upstream)
    assert other.header("x-turnout-cache") == "miss"
    raw = await through(cache, request(b"\x00binary tensor"), upstream)
    assert raw.header("x-turnout-cache") == "miss"
    assert (await through(cache, request(b"\x00binary tensor"), upstream)).header("x-turnout-cache") == "hit"
    assert upstream.calls == 3


def test_every_part_of_the_request_is_in_the_key() -> None:
    keys = CacheKeyBuilder("infer", ("x-lang",))
    base = keys.key(request()).value
    variants = [
        request(model="other"),
        request(tenant="acme"),
        request(arm="treatment"),
        request(headers={"x-lang": "fr"}),
        request(method="GET"),
        request(b'{"inputs": [1, 3]}'),
        request(None),
    ]
    versioned = request()
    versioned.model_version = "2"
    queried = request()
    queried.query = "verbose=1"
    found = {keys.key(ctx).value for ctx in [*variants, versioned, queried]}
    assert base not in found and len(found) == len(variants) + 2
    assert CacheKeyBuilder("other-route", ("x-lang",)).key(request()).value != base
    assert keys.key(request(headers={"x-other": "1"})).value == base  # not a vary header


async def test_errors_are_not_cached_and_release_the_followers() -> None:
    registry = CollectorRegistry()
    cache = build(registry)
    upstream = Upstream(status=503, delay=0.02)
    responses = await asyncio.gather(*(through(cache, request(), upstream) for _ in range(10)))
    assert upstream.calls == 10  # the leader's 503 was not shared: each follower went upstream itself
    assert {response.status for response in responses} == {503}
    assert {response.header("x-turnout-cache") for response in responses} == {"miss"}
    assert lookups(registry, "coalesced") == 0
    upstream.status = 200
    assert (await through(cache, request(), upstream)).header("x-turnout-cache") == "miss"
    assert (await through(cache, request(), upstream)).header("x-turnout-cache") == "hit"


async def test_a_leader_that_fails_without_a_response_releases_its_followers() -> None:
    cache = build()

    async def failing(ctx: RequestContext) -> Response:
        await asyncio.sleep(0.02)
        raise UpstreamFailed

    upstream = Upstream()
    leader = asyncio.create_task(through(cache, request(), failing))
    await asyncio.sleep(0.005)
    followers = [asyncio.create_task(through(cache, request(), upstream)) for _ in range(5)]
    with pytest.raises(UpstreamFailed):
        await leader
    answers = await asyncio.gather(*followers)
    assert {answer.status for answer in answers} == {200}
    assert upstream.calls == 5


async def test_a_slow_leader_is_waited_for_only_up_to_the_coalesce_timeout() -> None:
    cache = build(coalesce_timeout="30ms")
    slow, fast = Upstream(delay=0.5), Upstream(delay=0.0)
    leader = asyncio.create_task(through(cache, request(), slow))
    await asyncio.sleep(0.005)
    began = time.monotonic()
    follower = await through(cache, request(), fast)
    assert time.monotonic() - began < 0.3
    assert follower.header("x-turnout-cache") == "miss" and fast.calls == 1
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_tenants_never_see_each_others_answers() -> None:
    cache = build(vary_headers=["X-Region"], vary_on=["tenant"])
    upstream = Upstream()
    acme = await through(cache, request(tenant="acme"), upstream)
    globex = await through(cache, request(tenant="globex"), upstream)
    assert acme.header("x-turnout-cache") == globex.header("x-turnout-cache") == "miss"
    assert acme.body != globex.body
    assert (await through(cache, request(tenant="acme"), upstream)).body == acme.body
    eu = await through(cache, request(tenant="acme", headers={"x-region": "eu"}), upstream)
    assert eu.header("x-turnout-cache") == "miss"
    assert upstream.calls == 3


async def test_entries_expire_after_the_ttl() -> None:
    registry = CollectorRegistry()
    cache = build(registry, ttl="50ms")
    upstream = Upstream(delay=0.0)
    await through(cache, request(), upstream)
    assert (await through(cache, request(), upstream)).header("x-turnout-cache") == "hit"
    deadline = time.monotonic() + 2.0
    while (await through(cache, request(), upstream)).header("x-turnout-cache") == "hit":
        assert time.monotonic() < deadline, "the entry never expired"
        await asyncio.sleep(0.01)
    expired = {"route": "infer", "reason": "expired"}
    assert registry.get_sample_value("turnout_cache_evictions_total", expired) == 1


async def test_the_lru_keeps_at_most_max_entries_and_drops_the_least_recent() -> None:
    registry = CollectorRegistry()
    cache = build(registry, max_entries=3)
    upstream = Upstream(delay=0.0)
    for index in range(3):
        await through(cache, request(b"%d" % index), upstream)
    await through(cache, request(b"0"), upstream)  # 0 is now the most recent; 1 the least
    await through(cache, request(b"3"), upstream)
    outcomes = {
        index: (await through(cache, request(b"%d" % index), upstream)).header("x-turnout-cache")
        for index in (0, 2, 3)
    }
    assert outcomes == {0: "hit", 2: "hit", 3: "hit"}
    assert (await through(cache, request(b"1"), upstream)).header("x-turnout-cache") == "miss"
    capacity = {"route": "infer", "reason": "capacity"}
    assert registry.get_sample_value("turnout_cache_evictions_total", capacity) == 2  # 1, then 0 or 2


async def test_the_lru_keeps_at_most_max_bytes() -> None:
    cache = build(max_bytes=4000)
    store = cache._store
    big = Upstream(delay=0.0)

    async def answer(ctx: RequestContext) -> Response:
        await big(ctx)
        return Response(200, [], b"x" * 1000)

    for index in range(10):
        await through(cache, request(b"%d" % index), answer)
        assert store.bytes <= 4000  # type: ignore[attr-defined]
    assert len(store) == 3  # type: ignore[arg-type]

    async def huge(ctx: RequestContext) -> Response:
        return Response(200, [], b"x" * 5000)

    await through(cache, request(b"huge"), huge)
    assert (await through(cache, request(b"huge"), huge)).header("x-turnout-cache") == "miss"


async def test_no_cache_skips_the_lookup_but_stores_and_no_store_does_neither() -> None:
    cache = build()
    upstream = Upstream(delay=0.0)
    await through(cache, request(), upstream)
    fresh = await through(cache, request(headers={"cache-control": "no-cache"}), upstream)
    assert fresh.header("x-turnout-cache") == "miss" and upstream.calls == 2
    hit = await through(cache, request(), upstream)
    assert hit.header("x-turnout-cache") == "hit"
    assert orjson.loads(hit.body or b"{}")["call"] == 2  # the no-cache answer replaced the old one
    bypass = await through(cache, request(b"{}", headers={"cache-control": "max-age=0, No-Store"}), upstream)
    assert bypass.header("x-turnout-cache") == "bypass"
    assert (await through(cache, request(b"{}"), upstream)).header("x-turnout-cache") == "miss"


@pytest.mark.parametrize(
    "headers",
    [[("set-cookie", "session=1")], [("cache-control", "private")], [("cache-control", "no-store")]],
)
async def test_answers_the_upstream_marks_personal_are_not_stored(headers: list[tuple[str, str]]) -> None:
    cache = build()
    upstream = Upstream(delay=0.0, headers=headers)
    await through(cache, request(), upstream)
    assert (await through(cache, request(), upstream)).header("x-turnout-cache") == "miss"


async def test_stored_answers_drop_per_request_headers() -> None:
    cache = build()
    upstream = Upstream(delay=0.0, headers=[("ratelimit", '"x";r=1;t=1'), ("x-model-version", "7")])
    await through(cache, request(), upstream)
    hit = await through(cache, request(), upstream)
    names = [name for name, _ in hit.headers]
    assert "x-model-version" in names and "content-type" in names
    assert "ratelimit" not in names and "content-length" not in names


async def test_methods_outside_the_list_pass_untouched() -> None:
    cache = build(methods=["post"])
    upstream = Upstream(delay=0.0)
    for _ in range(2):
        response = await through(cache, request(method="GET"), upstream)
        assert response.header("x-turnout-cache") is None
    assert upstream.calls == 2


async def test_an_arm_assigned_after_the_lookup_is_never_cached() -> None:
    cache = build()
    upstream = Upstream(delay=0.0)

    def assign_arm(ctx: RequestContext) -> None:
        ctx.arm = "treatment"

    await through(cache, request(), upstream, before_response=assign_arm)
    assert (await through(cache, request(), upstream, before_response=assign_arm)).header(
        "x-turnout-cache"
    ) == "miss"
    await through(cache, request(arm="control"), upstream)
    assert (await through(cache, request(arm="control"), upstream)).header("x-turnout-cache") == "hit"


async def test_invalidation_by_model_and_of_everything() -> None:
    registry = CollectorRegistry()
    cache = build(registry)
    upstream = Upstream(delay=0.0)
    for model in ("a", "b", "c"):
        await through(cache, request(model=model), upstream)
    assert await cache.invalidate("a") == 1
    states = {m: (await through(cache, request(model=m), upstream)).header("x-turnout-cache") for m in "abc"}
    assert states == {"a": "miss", "b": "hit", "c": "hit"}
    assert await cache.invalidate(None) == 3
    assert (await through(cache, request(model="b"), upstream)).header("x-turnout-cache") == "miss"
    invalidated = {"route": "infer", "reason": "invalidated"}
    assert registry.get_sample_value("turnout_cache_evictions_total", invalidated) == 4


async def test_an_answer_in_flight_during_invalidation_is_not_stored() -> None:
    cache = build()
    upstream = Upstream(delay=0.05)
    in_flight = asyncio.create_task(through(cache, request(), upstream))
    await asyncio.sleep(0.01)
    await cache.invalidate("m")
    await in_flight
    assert (await through(cache, request(), upstream)).header("x-turnout-cache") == "miss"

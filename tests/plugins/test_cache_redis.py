"""The response cache in Redis: shared by gateways, invalidated by model, and harmless when Redis fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Decision, Response
from plugins.cache import FACTORY, CacheConfig, CacheFilter

if TYPE_CHECKING:
    from tests.plugins.conftest import RedisServer

BUDGET_S = 0.05
# The most one request may spend in the cache while Redis is down: the budget, with room for CI.
CEILING_S = 0.25
RECOVERY_DEADLINE_S = 5.0


@asynccontextmanager
async def cache(
    redis: RedisServer, registry: CollectorRegistry | None = None, **options: Any
) -> AsyncIterator[CacheFilter]:
    config = CacheConfig.model_validate(
        {"backend": "redis", "redis_timeout": "50ms", "redis_retry_interval": "50ms", **options}
    )
    built = FACTORY(config, BuildContext("infer", "up", registry, redis_url=redis.url))
    assert isinstance(built, CacheFilter)
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


def request(model: str = "m", body: bytes = b'{"inputs": [1]}', tenant: str | None = None) -> RequestContext:
    # Anonymous unless a tenant is named: a request with credentials is cached only with `vary_on`.
    principal = None if tenant is None else Principal("c", tenant=tenant)
    ctx = RequestContext("POST", f"/v2/models/{model}/infer", "", {}, "10.0.0.1", 0.0, principal=principal)
    ctx.route, ctx.model, ctx.body = "infer", model, body
    return ctx


class Upstream:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ctx: RequestContext) -> Response:
        self.calls += 1
        return Response(200, [("content-type", "application/json")], orjson.dumps({"call": self.calls}))


async def decided(result: Decision | Awaitable[Decision]) -> Decision:
    """What a request phase decided: its plain answer, or what its awaitable gives."""
    if result is None or isinstance(result, Response):
        return result
    return await result


async def through(cache: CacheFilter, ctx: RequestContext, upstream: Upstream) -> Response:
    began = time.monotonic()
    answer = await decided(cache.on_request(ctx))
    response = answer if answer is not None else upstream(ctx)
    storing = cache.on_response(ctx, response)  # an awaitable only when there is an answer to store
    if storing is not None:
        await storing
    cache.on_log(ctx)
    elapsed = time.monotonic() - began
    assert elapsed < CEILING_S, f"the cache took {elapsed:.3f} s of a request with a {BUDGET_S} s budget"
    return response


async def test_gateways_share_answers_through_redis(redis_server: RedisServer) -> None:
    upstream = Upstream()
    async with cache(redis_server) as first, cache(redis_server) as second:
        stored = await through(first, request(), upstream)
        assert stored.header("x-turnout-cache") == "miss"
        hit = await through(second, request(), upstream)
        assert hit.header("x-turnout-cache") == "hit"
        assert hit.body == stored.body and hit.status == 200
        assert hit.header("content-type") == "application/json" and hit.header("age") == "0"
        other_tenant = await through(second, request(tenant="acme"), upstream)
        assert other_tenant.header("x-turnout-cache") == "miss"
    assert upstream.calls == 2


async def test_entries_in_redis_expire_with_the_ttl(redis_server: RedisServer) -> None:
    upstream = Upstream()
    async with cache(redis_server, ttl="2s") as shared:
        await through(shared, request(), upstream)
    keys = redis_server.command("KEYS", "turnout:cache:infer:m:*").decode()
    name = next(line for line in keys.split("\r\n") if line.startswith("turnout:"))
    ttl = int(redis_server.command("PTTL", name).decode().strip(":\r\n"))
    assert 1000 < ttl <= 2000


async def test_invalidation_removes_only_that_models_entries(redis_server: RedisServer) -> None:
    upstream = Upstream()
    models = ["a", "a:b", "a*", "ab"]
    async with cache(redis_server) as first, cache(redis_server) as second:
        for model in models:
            await through(first, request(model), upstream)
        assert await second.invalidate("a") == 1
        outcomes = {m: (await through(first, request(m), upstream)).header("x-turnout-cache") for m in models}
        assert outcomes == {"a": "miss", "a:b": "hit", "a*": "hit", "ab": "hit"}
        assert await second.invalidate("a*") == 1
        assert (await through(first, request("ab"), upstream)).header("x-turnout-cache") == "hit"
        assert await first.invalidate(None) == 3  # a (stored again just above), a:b and ab


async def test_a_dead_redis_is_a_miss_within_the_budget_and_recovers(redis_server: RedisServer) -> None:
    registry = CollectorRegistry()
    upstream = Upstream()
    async with cache(redis_server, registry) as shared:
        await through(shared, request(), upstream)
        redis_server.kill()
        for _ in range(5):
            response = await through(shared, request(), upstream)
            assert response.status == 200 and response.header("x-turnout-cache") == "miss"
        errors = registry.get_sample_value("turnout_cache_redis_errors_total", {"route": "infer"})
        assert errors is not None and errors >= 1

        redis_server.start()  # empty again: the first answer after recovery is stored, then hit
        deadline = time.monotonic() + RECOVERY_DEADLINE_S
        while (await through(shared, request(), upstream)).header("x-turnout-cache") != "hit":
            assert time.monotonic() < deadline, "the cache never used Redis again"
            await asyncio.sleep(0.01)


async def test_a_hung_redis_costs_at_most_the_budget(redis_server: RedisServer) -> None:
    upstream = Upstream()
    async with cache(redis_server) as shared:
        await through(shared, request(), upstream)
        redis_server.pause()
        try:
            for index in range(10):
                response = await through(shared, request(body=b"%d" % index), upstream)
                assert response.header("x-turnout-cache") == "miss"
                await asyncio.sleep(0.01)
        finally:
            redis_server.resume()

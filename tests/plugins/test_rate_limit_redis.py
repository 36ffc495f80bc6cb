"""The rate-limit filter with Redis: exact under concurrency across limiters, and Redis outages.

Each test runs against the private redis-server of conftest.py; outages are real (SIGKILL, SIGSTOP)
and every decision taken during one is timed against the budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.rate_limit import FACTORY, RateLimitConfig

if TYPE_CHECKING:
    from tests.plugins.conftest import RedisServer

BUDGET_S = 0.05
# What a decision may take during an outage: the budget plus generous room for a loaded CI machine.
DECISION_CEILING_S = 0.25
# How long Redis is skipped after a failure; short so that the recovery tests are quick.
RETRY_INTERVAL = "50ms"
RECOVERY_DEADLINE_S = 5.0


def request(principal: str = "alice", body: bytes | None = None) -> RequestContext:
    ctx = RequestContext(
        "POST", "/v2/models/m/infer", "", {}, "10.0.0.1", 0.0, principal=Principal(principal)
    )
    ctx.route, ctx.model, ctx.body = "infer", "m", body
    return ctx


@asynccontextmanager
async def limiter(
    redis: RedisServer,
    limits: list[dict[str, Any]],
    registry: CollectorRegistry | None = None,
    **options: Any,
) -> AsyncIterator[Filter]:
    config = RateLimitConfig.model_validate(
        {
            "limits": limits,
            "backend": "redis",
            "redis_timeout": f"{int(BUDGET_S * 1000)}ms",
            "redis_retry_interval": RETRY_INTERVAL,
            **options,
        }
    )
    built = FACTORY(config, BuildContext("infer", "up", registry, redis_url=redis.url))
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


async def decide(limit: Filter, ctx: RequestContext) -> Response | None:
    decision = limit.on_request(ctx)
    assert asyncio.iscoroutine(decision), "the Redis backend awaits its decision"
    result: Response | None = await decision
    return result


async def timed(limit: Filter, ctx: RequestContext) -> Response | None:
    began = time.monotonic()
    decision = await decide(limit, ctx)
    elapsed = time.monotonic() - began
    assert elapsed < DECISION_CEILING_S, f"a decision took {elapsed:.3f} s with a {BUDGET_S} s budget"
    return decision


def fallbacks(registry: CollectorRegistry, policy: str) -> float:
    value = registry.get_sample_value(
        "turnout_rate_limit_fallback_decisions_total", {"route": "infer", "policy": policy}
    )
    return value or 0.0


async def wait_for_redis_again(limit: Filter, registry: CollectorRegistry, policy: str) -> None:
    """Decide (as fresh callers) until a decision is taken by Redis, not by the fallback."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    attempt = 0
    while time.monotonic() < deadline:
        before = fallbacks(registry, policy)
        attempt += 1
        await timed(limit, request(f"probe-{attempt}"))
        if fallbacks(registry, policy) == before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the limiter did not go back to Redis after it restarted")


async def test_two_limiters_sharing_redis_admit_exactly_the_limit(redis_server: RedisServer) -> None:
    # A cold pool opening connections under 300 simultaneous decisions can exceed 50 ms; this test is
    # about exactness, so its budget is wide and it checks that Redis, not a fallback, decided.
    limits = [{"key": "principal", "rate": "25/h"}]
    registry = CollectorRegistry()
    async with (
        limiter(redis_server, limits, registry, redis_timeout="5s") as first,
        limiter(redis_server, limits, CollectorRegistry(), redis_timeout="5s") as second,
    ):
        decisions = await asyncio.gather(
            *(decide(first if index % 2 else second, request()) for index in range(300))
        )
    admitted = sum(decision is None for decision in decisions)
    assert admitted == 25
    assert {decision.status for decision in decisions if decision is not None} == {429}
    assert fallbacks(registry, "local") == 0


async def test_headers_match_the_in_process_limiter(redis_server: RedisServer) -> None:
    async with limiter(redis_server, [{"key": "principal", "rate": "5/s"}]) as limit:
        for expected in range(4, -1, -1):
            ctx = request()
            assert await decide(limit, ctx) is None
            response = Response(200)
            limit.on_response(ctx, response)
            assert response.header("ratelimit") == f'"per-principal";r={expected};t=1'
        refused = await decide(limit, request())
    assert refused is not None and refused.status == 429
    assert refused.header("retry-after") == "1"
    assert refused.header("ratelimit-policy") == '"per-principal";q=5;w=1'
    assert refused.header("ratelimit") == '"per-principal";r=0;t=1'


async def test_a_refusing_limit_charges_none_of_the_others_in_redis(redis_server: RedisServer) -> None:
    limits = [
        {"key": "principal", "rate": "10/h", "name": "user"},
        {"key": "route", "rate": "1/h", "name": "all"},
    ]
    async with limiter(redis_server, limits) as limit:
        assert await decide(limit, request("alice")) is None
        for _ in range(3):
            refused = await decide(limit, request("alice"))
            assert refused is not None and refused.status == 429
            assert refused.header("ratelimit") == '"user";r=9;t=360, "all";r=0;t=3600'


async def test_costs_in_rows_against_redis(redis_server: RedisServer) -> None:
    def batch(rows: int) -> bytes:
        return orjson.dumps(
            {"inputs": [{"name": "x", "datatype": "INT32", "shape": [rows], "data": [1] * rows}]}
        )

    async with limiter(redis_server, [{"key": "principal", "rate": "8/h", "cost": "rows"}]) as limit:
        assert limit.needs_request_body
        assert await decide(limit, request(body=batch(5))) is None
        assert await decide(limit, request(body=batch(4))) is not None
        assert await decide(limit, request(body=batch(3))) is None
        assert await decide(limit, request(body=batch(1))) is not None


async def test_keys_expire_once_their_bucket_is_full(redis_server: RedisServer) -> None:
    async with limiter(redis_server, [{"key": "principal", "rate": "10/s", "burst": 2}]) as limit:
        assert await decide(limit, request()) is None
    ttl = int(redis_server.command("PTTL", "turnout:rl:infer:per-principal:p:alice").decode().strip(":\r\n"))
    assert 0 < ttl <= 101  # one unit of 100 ms to refill, plus a millisecond of rounding


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed", "local"])
async def test_redis_killed_then_restarted(redis_server: RedisServer, policy: str) -> None:
    registry = CollectorRegistry()
    async with limiter(
        redis_server, [{"key": "principal", "rate": "3/h"}], registry, on_redis_failure=policy
    ) as limit:
        assert await timed(limit, request()) is None
        redis_server.kill()
        during = [await timed(limit, request()) for _ in range(6)]
        if policy == "fail_open":
            assert during == [None] * 6
        elif policy == "fail_closed":
            assert all(d is not None and d.status == 503 and d.header("retry-after") for d in during)
        else:  # the in-process limiter knows nothing of Redis's count: it admits its own 3
            assert [d is None for d in during] == [True] * 3 + [False] * 3
            assert {d.status for d in during if d is not None} == {429}
        assert fallbacks(registry, policy) == 6
        errors = registry.get_sample_value("turnout_rate_limit_redis_errors_total", {"route": "infer"})
        assert errors is not None and errors >= 1

        redis_server.start()
        await wait_for_redis_again(limit, registry, policy)
        # Back on Redis (restarted empty): alice has her full quota there again.
        assert [await timed(limit, request()) is None for _ in range(4)] == [True] * 3 + [False]


async def test_a_hung_redis_costs_at_most_the_budget(redis_server: RedisServer) -> None:
    registry = CollectorRegistry()
    async with limiter(
        redis_server, [{"key": "principal", "rate": "100/s"}], registry, on_redis_failure="fail_open"
    ) as limit:
        assert await timed(limit, request()) is None
        redis_server.pause()
        try:
            decisions = []
            for index in range(20):
                decisions.append(await timed(limit, request(f"caller-{index}")))
                await asyncio.sleep(0.01)  # spread over several retry intervals: Redis is probed again
            concurrent = await asyncio.gather(*(timed(limit, request(f"many-{i}")) for i in range(50)))
        finally:
            redis_server.resume()
        assert decisions == [None] * 20 and list(concurrent) == [None] * 50
        assert fallbacks(registry, "fail_open") == 70
        errors = registry.get_sample_value("turnout_rate_limit_redis_errors_total", {"route": "infer"})
        assert errors is not None and errors >= 2  # Redis was probed again (and waited on) after a pause
        await wait_for_redis_again(limit, registry, "fail_open")

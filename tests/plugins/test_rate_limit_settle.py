"""Token limits settle with the usage the server reported, in this process and in Redis: the
estimate charged at admission is corrected by the difference (refunds: tests/llm/test_llm_token_limits.py)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Filter
from plugins.rate_limit import FACTORY, RateLimitConfig

if TYPE_CHECKING:
    from tests.plugins.conftest import RedisServer

# A prompt of 4 characters and no max_tokens: an estimate of 1 token.
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "abcd"}]}).encode()
LIMIT = {"key": "principal", "rate": "60/min", "burst": 60, "cost": "tokens"}


def request() -> RequestContext:
    ctx = RequestContext("POST", "/v1/chat/completions", "", {}, "10.0.0.1", 0.0, principal=Principal("p"))
    ctx.route, ctx.body = "chat", BODY
    return ctx


async def admitted(limit: Filter, used: int | None) -> bool:
    """One request through the request and logging phases; `used`: the tokens the server reported."""
    ctx = request()
    decision: Any = limit.on_request(ctx)
    if asyncio.iscoroutine(decision):
        decision = await decision
    if decision is not None:
        return False
    ctx.prompt_tokens, ctx.completion_tokens = (None, None) if used is None else (1, used - 1)
    settling = limit.on_log(ctx)
    if settling is not None:
        await settling
    return True


async def build(**options: Any) -> Filter:
    config = RateLimitConfig.model_validate({"limits": [LIMIT], **options})
    built = FACTORY(
        config, BuildContext("chat", "up", CollectorRegistry(), redis_url=options.get("redis_url"))
    )
    await built.start()
    return built


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_usage_above_the_estimate_is_charged_and_no_usage_leaves_the_estimate(
    backend: str, redis_server: RedisServer
) -> None:
    options = {"backend": "redis", "redis_url": redis_server.url} if backend == "redis" else {}
    limit = await build(**options)
    try:
        # 20 tokens used each, 1 estimated: three fit in 60, the fourth does not.
        assert [await admitted(limit, 20) for _ in range(4)] == [True, True, True, False]
    finally:
        await limit.stop()
    limit = await build(**options)
    try:
        if backend == "redis":
            redis_server.flush()
        # No usage reported: the estimate stands (1 each), so sixty pass.
        assert all([await admitted(limit, None) for _ in range(60)])
        assert not await admitted(limit, None)
    finally:
        await limit.stop()

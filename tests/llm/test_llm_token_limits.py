"""Token rate limits charge an estimate at admission and settle with the usage the server reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from plugins.rate_limit.gcra import GcraLimit
from plugins.rate_limit.memory_backend import MemoryLimiter
from tests.conftest import gateway_config
from tests.support.processes import Process

# 20 words: the stand-in answers 20 completion tokens, where the admission estimate (a one-character
# prompt, no max_tokens) is 1 token.
_REPLY = " ".join(["word"] * 20)


async def test_a_tenant_is_held_to_the_tokens_it_used_not_to_the_estimate(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    limit = {"key": "route", "rate": "60/min", "burst": 60, "cost": "tokens"}
    config = gateway_config(
        [f"127.0.0.1:{llm_a.port}"],
        routes=[
            {
                "name": "chat",
                "match": {"prefix": "/v1", "model": "qwen"},
                "backend": {"cluster": "llm-a"},
                "filters": [{"rate_limit": {"limits": [limit]}}],
            }
        ],
    )
    config["clusters"] = {"llm-a": {"endpoints": [f"127.0.0.1:{llm_a.port}"], "protocol": "openai"}}
    url = f"http://127.0.0.1:{config['listen']['port']}/v1/chat/completions"
    body = {"model": "qwen", "messages": [{"role": "user", "content": "a"}], "reply": _REPLY}
    statuses = []
    async with make_gateway(config), aiohttp.ClientSession() as http:
        for stream in (False, True, False, True, False):
            async with http.post(url, json={**body, "stream": stream}) as answer:
                await answer.read()
                statuses.append(answer.status)
    # 21 tokens each (1 prompt + 20 answer) against 60: three admitted, then the debt refuses the
    # fourth. Charged by the estimate alone (1 each), all five would pass.
    assert statuses == [200, 200, 200, 429, 429]


def test_settling_charges_the_difference_and_never_refunds_past_full() -> None:
    limiter = MemoryLimiter([GcraLimit.of(10, 1.0, 10)])
    assert limiter.decide(["k"], [1], 0.0).allowed
    limiter.settle(0, "k", 8, 0.0)  # 9 of 10 used
    assert limiter.decide(["k"], [1], 0.0).allowed
    assert not limiter.decide(["k"], [1], 0.0).allowed
    limiter.settle(0, "k", -100, 0.0)  # a refund larger than the use: the bucket is full, no more
    assert len(limiter) == 0
    assert [limiter.decide(["k"], [1], 0.0).allowed for _ in range(11)] == [True] * 10 + [False]

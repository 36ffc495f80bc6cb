"""A 5xx answer larger than what model-error detection holds back (64 KiB) is relayed or retried
like any server failure, and the connection it came on is never pooled with part of it unread:
the next request on the route gets a whole answer of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from tests.llm.test_llm_body_routing import base, llm_config
from tests.support.processes import Process

# Past routing/resilience/model_errors.py's DEFAULT_MAX_BODY (64 KiB).
ERROR_BYTES = 100 * 1024


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("status", [500, 503], ids=["relayed", "retried"])
@pytest.mark.parametrize("model_errors", [False, True], ids=["plain", "model-errors"])
async def test_a_large_5xx_leaves_no_connection_half_read(
    llm_a: Process,
    llm_b: Process,
    make_gateway: Callable[[dict[str, Any]], Any],
    chunked: bool,
    status: int,
    model_errors: bool,
) -> None:
    config = llm_config(llm_a, llm_b)
    cluster = config["clusters"]["llm-a"]
    # One connection: a request after the error reuses the pooled one or opens a fresh one.
    cluster["max_connections_per_endpoint"] = 1
    cluster["retry"] = {"attempts": 1}  # 503 is retried once, 500 is not (the default conditions)
    if model_errors:
        cluster["model_errors"] = {}
    url = base(config) + "/v1/chat/completions"
    failing = {"model": "qwen2.5-7b", "messages": [], "error_bytes": ERROR_BYTES}
    failing |= {"error_status": status, "error_chunked": chunked}
    fine = {"model": "qwen2.5-7b", "messages": [{"role": "user", "content": "hi"}]}
    connections = f"http://127.0.0.1:{llm_a.port}/_connections"
    async with make_gateway(config), aiohttp.ClientSession() as http:
        async with http.get(connections) as answer:
            before = await answer.json()
        for _ in range(3):
            async with http.post(url, data=orjson.dumps(failing)) as answer:
                assert answer.status == status
                error = await answer.json()
            assert len(error["error"]["message"]) == ERROR_BYTES
            for stream in (False, True):
                async with http.post(url, data=orjson.dumps({**fine, "stream": stream})) as answer:
                    assert answer.status == 200
                    text = await answer.text()
                assert "hello" in text and "x" * 100 not in text
        async with http.get(connections) as answer:
            opened = await answer.json() - before
    if status == 500:
        # Relayed whole, the error's connection went back to the pool and carried every request.
        assert opened == 1
    else:
        # A retried 5xx's connection is closed unread (`UpstreamAttempt.drop`); the retry's answer,
        # relayed whole, is pooled: one connection more per error.
        assert opened == 4

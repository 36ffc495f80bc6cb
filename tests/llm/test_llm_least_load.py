"""least_load steers requests away from an LLM server whose metrics report a long queue, and reads
vLLM's (and its configured) metric names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from routing.health.load_scraper import read_load
from tests.conftest import gateway_config
from tests.support.processes import Process


async def set_waiting(http: aiohttp.ClientSession, server: Process, waiting: int) -> None:
    async with http.post(f"http://127.0.0.1:{server.port}/_waiting", params={"n": str(waiting)}) as answer:
        assert answer.status == 200


async def test_requests_avoid_the_endpoint_with_a_long_queue(
    llm_a: Process, llm_b: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    endpoints = [f"127.0.0.1:{llm_a.port}", f"127.0.0.1:{llm_b.port}"]
    config = gateway_config(
        endpoints,
        routes=[{"name": "chat", "match": {"prefix": "/v1", "model": "m"}, "backend": {"cluster": "llm"}}],
    )
    config["clusters"] = {
        "llm": {
            "endpoints": endpoints,
            "protocol": "openai",
            "balancer": {"type": "least_load", "interval": "100ms"},
        }
    }
    url = f"http://127.0.0.1:{config['listen']['port']}/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        try:
            for busy, idle in ((llm_a, "llm-b"), (llm_b, "llm-a")):
                await set_waiting(http, llm_a, 0)
                await set_waiting(http, llm_b, 0)
                await set_waiting(http, busy, 50)
                async with make_gateway(config):
                    await asyncio.sleep(0.5)  # a few scrapes
                    served = []
                    for _ in range(20):
                        async with http.post(url, json=body) as answer:
                            served.append((await answer.json())["system_fingerprint"])
                assert served == [idle] * 20
        finally:
            await set_waiting(http, llm_a, 0)
            await set_waiting(http, llm_b, 0)


def test_the_load_is_read_from_prometheus_text() -> None:
    page = (
        "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
        'vllm:num_requests_waiting{model_name="a"} 3.0\n'
        'vllm:num_requests_waiting{model_name="b"} 2.0 1700000000000\n'
        "vllm:gpu_cache_usage_perc 0.75\n"
        "other_metric 99\n"
    )
    queue = frozenset({"vllm:num_requests_waiting"})
    kv = frozenset({"vllm:gpu_cache_usage_perc"})
    assert read_load(page, queue, kv) == (5.0, 0.75)
    assert read_load("other_metric 1\n", queue, kv) is None
    assert read_load("tgi_queue_size 4\n", frozenset({"tgi_queue_size"}), frozenset()) == (4.0, 0.0)


async def test_prompts_sharing_a_prefix_stay_on_one_endpoint(
    llm_a: Process, llm_b: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    endpoints = [f"127.0.0.1:{llm_a.port}", f"127.0.0.1:{llm_b.port}"]
    config = gateway_config(
        endpoints,
        routes=[{"name": "chat", "match": {"prefix": "/v1", "model": "m"}, "backend": {"cluster": "llm"}}],
    )
    config["clusters"] = {
        "llm": {
            "endpoints": endpoints,
            "protocol": "openai",
            "balancer": {"type": "least_load", "prefix_affinity": 40},
        }
    }
    url = f"http://127.0.0.1:{config['listen']['port']}/v1/chat/completions"

    def body(system: str, question: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        return {"model": "m", "messages": messages}

    async with make_gateway(config), aiohttp.ClientSession() as http:
        by_system: dict[str, set[str]] = {}
        for n in range(12):
            system = f"You are assistant number {n}, a long shared instruction."
            for question in ("first?", "second?", "third?"):
                async with http.post(url, json=body(system, question)) as answer:
                    by_system.setdefault(system, set()).add((await answer.json())["system_fingerprint"])
    assert all(len(served) == 1 for served in by_system.values()), by_system
    assert set().union(*by_system.values()) == {"llm-a", "llm-b"}, "different prefixes spread"

"""Streamed completions pass the cache as they arrive and are never stored; sampled completions
bypass it; a completion served from the cache gets a fresh id."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import openai

from tests.conftest import gateway_config
from tests.support.processes import Process

# The stand-in waits this long after each streamed word: long enough that a held-back stream would
# show as a first chunk arriving with the last, short enough to keep the test quick.
_WORD_DELAY_MS = 150
_REPLY = "one two three four"


def cached_llm_config(a: Process, **cache: Any) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{a.port}"],
        routes=[
            {
                "name": "chat",
                "match": {"prefix": "/v1", "model": "qwen2.5-7b"},
                "backend": {"cluster": "llm-a"},
                "filters": [{"cache": {"methods": ["POST"], **cache}}],
            }
        ],
    )
    config["clusters"] = {"llm-a": {"endpoints": [f"127.0.0.1:{a.port}"], "protocol": "openai"}}
    return config


def client(config: dict[str, Any]) -> openai.AsyncOpenAI:
    url = f"http://127.0.0.1:{config['listen']['port']}/v1"
    return openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)


async def test_a_stream_arrives_chunk_by_chunk_through_the_cache_and_is_not_stored(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = cached_llm_config(llm_a)
    async with make_gateway(config):
        llm = client(config)
        ids = []
        for _ in range(2):
            started = time.monotonic()
            arrivals: list[float] = []
            pieces: list[str] = []
            stream = await llm.chat.completions.create(
                model="qwen2.5-7b",
                messages=[{"role": "user", "content": "count"}],
                stream=True,
                temperature=0,
                extra_body={"reply": _REPLY, "delay_ms": _WORD_DELAY_MS},
            )
            async for chunk in stream:
                arrivals.append(time.monotonic() - started)
                pieces.extend(choice.delta.content or "" for choice in chunk.choices)
                ids.append(chunk.id)
            assert "".join(pieces) == _REPLY
            # Four words, 150 ms apart: held back, all would arrive together after 600 ms.
            assert arrivals[-1] - arrivals[0] > 3 * _WORD_DELAY_MS / 1000 * 0.8
        assert len(set(ids)) == 2, "the second stream went upstream again"
        await llm.close()
        # Without credentials (the client above sends some, which keeps its answers private anyway).
        url = f"http://127.0.0.1:{config['listen']['port']}/v1/chat/completions"
        body = {"model": "qwen2.5-7b", "messages": [], "stream": True, "temperature": 0, "reply": "a b"}
        async with aiohttp.ClientSession() as http:
            seen = []
            for _ in range(2):
                async with http.post(url, json=body) as answer:
                    seen.append((answer.headers["x-turnout-cache"], (await answer.read()).split(b"\n")[0]))
        assert [state for state, _ in seen] == ["miss", "miss"], "a stream is never stored"
        assert seen[0][1] != seen[1][1], "each stream came from upstream, with its own id"


async def test_a_deterministic_completion_is_served_again_with_a_fresh_id(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    # Without credentials: a request with an Authorization header is private to its caller (see the
    # cache's docs), which is not what this test is about.
    config = cached_llm_config(llm_a)
    url = f"http://127.0.0.1:{config['listen']['port']}/v1/chat/completions"
    request = {"model": "qwen2.5-7b", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    async with make_gateway(config), aiohttp.ClientSession() as http:
        answers = []
        for _ in range(2):
            async with http.post(url, json=request) as answer:
                answers.append((answer.headers["x-turnout-cache"], await answer.json()))
    (first_state, one), (second_state, two) = answers
    assert (first_state, second_state) == ("miss", "hit")
    assert one["choices"] == two["choices"]
    assert one["id"] != two["id"] and two["id"].startswith("cmpl-")
    assert two["created"] >= one["created"]


async def test_a_sampled_completion_bypasses_the_cache_unless_configured(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    sampled = {"model": "qwen2.5-7b", "messages": [{"role": "user", "content": "hi"}]}  # default: 1
    for options, expected in (({}, ["bypass", "bypass"]), ({"store_sampled": True}, ["miss", "hit"])):
        config = cached_llm_config(llm_a, **options)
        url = f"http://127.0.0.1:{config['listen']['port']}/v1/chat/completions"
        async with make_gateway(config), aiohttp.ClientSession() as http:
            seen = []
            for _ in range(2):
                async with http.post(url, json={**sampled, "temperature": 0.7}) as answer:
                    assert answer.status == 200
                    seen.append(answer.headers["x-turnout-cache"])
            assert seen == expected
            async with http.post(url, json=sampled) as answer:
                assert answer.headers["x-turnout-cache"] == ("bypass" if not options else "miss")


async def first_chunk_after(llm: openai.AsyncOpenAI) -> float:
    started = time.monotonic()
    stream = await llm.chat.completions.create(
        model="qwen2.5-7b",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        temperature=0,
        extra_body={"reply": _REPLY, "delay_ms": _WORD_DELAY_MS},
    )
    async for _ in stream:
        first = time.monotonic() - started
        break
    await stream.close()
    return first


async def test_the_first_chunk_arrives_within_50_ms_of_direct(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = cached_llm_config(llm_a)
    direct = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{llm_a.port}/v1", api_key="none", max_retries=0)
    async with make_gateway(config):
        through = client(config)
        # Best of five each, alternating: a shared machine's pauses hit both alike.
        direct_times, gateway_times = [], []
        for _ in range(5):
            direct_times.append(await first_chunk_after(direct))
            gateway_times.append(await first_chunk_after(through))
        await through.close()
    await direct.close()
    assert min(gateway_times) - min(direct_times) < 0.05, (direct_times, gateway_times)

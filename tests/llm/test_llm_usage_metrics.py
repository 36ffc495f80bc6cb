"""Token usage is read from every OpenAI answer, streamed or not: the gateway asks a stream for its
usage chunk and removes it again for a client that did not ask; token latencies are histograms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway_config
from tests.support.processes import Process


def llm_config(a: Process) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{a.port}"],
        routes=[
            {"name": "chat", "match": {"prefix": "/v1", "model": "qwen"}, "backend": {"cluster": "llm-a"}}
        ],
    )
    config["clusters"] = {"llm-a": {"endpoints": [f"127.0.0.1:{a.port}"], "protocol": "openai"}}
    return config


async def samples(config: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{config['admin']['port']}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        text = await answer.text()
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("turnout_llm"):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


USAGE_LABELS = (("model", "qwen"), ("principal", ""), ("route", "chat"), ("tenant", ""))
LATENCY_LABELS = (("model", "qwen"), ("route", "chat"))


async def test_a_stream_that_did_not_ask_for_usage_is_counted_and_gets_none(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(llm_a)
    async with make_gateway(config):
        url = f"http://127.0.0.1:{config['listen']['port']}/v1"
        llm = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
        stream = await llm.chat.completions.create(
            model="qwen",
            messages=[{"role": "user", "content": "three words here"}],
            stream=True,
            extra_body={"reply": "a b c d e", "delay_ms": 20},
        )
        chunks = [chunk async for chunk in stream]
        assert all(chunk.usage is None and chunk.choices for chunk in chunks), "no usage chunk reached it"
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "a b c d e"
        asked = await llm.chat.completions.create(
            model="qwen",
            messages=[{"role": "user", "content": "two words"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        last = [chunk async for chunk in asked][-1]
        assert last.usage is not None and (last.usage.prompt_tokens, last.usage.completion_tokens) == (2, 3)
        plain = await llm.completions.create(model="qwen", prompt="one", extra_body={"reply": "x y"})
        assert plain.usage is not None and plain.usage.completion_tokens == 2
        await llm.close()
        found = await samples(config)
    assert found[("turnout_llm_requests_total", USAGE_LABELS)] == 3
    assert found[("turnout_llm_prompt_tokens_total", USAGE_LABELS)] == 3 + 2 + 1
    assert found[("turnout_llm_completion_tokens_total", USAGE_LABELS)] == 5 + 3 + 2
    assert found[("turnout_llm_time_to_first_token_seconds_count", LATENCY_LABELS)] == 2
    # Five tokens 20 ms apart: a mean of about 20 ms per token after the first.
    assert found[("turnout_llm_time_per_output_token_seconds_count", LATENCY_LABELS)] == 2
    tpot_sum = found[("turnout_llm_time_per_output_token_seconds_sum", LATENCY_LABELS)]
    assert 0.01 < tpot_sum < 0.2

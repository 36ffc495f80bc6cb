"""OpenAI routes choose their cluster by the body's `model`: aliases rename it upstream,
`GET /v1/models` lists what the config routes, and bad bodies get OpenAI-shaped errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import gateway_config
from tests.support.processes import Process


def llm_config(a: Process, b: Process) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{a.port}"],
        routes=[
            {
                "name": "mini",
                "match": {"prefix": "/v1", "model": "gpt-4o-mini"},
                "rewrite": {"model": "qwen2.5-7b"},
                "backend": {"cluster": "llm-a"},
            },
            {
                "name": "qwen",
                "match": {"prefix": "/v1", "model": "qwen2.5-7b"},
                "backend": {"cluster": "llm-a"},
            },
            {
                "name": "big",
                "match": {"prefix": "/v1", "model": "llama-70b"},
                "backend": {"cluster": "llm-b"},
            },
        ],
    )
    config["clusters"] = {
        "llm-a": {"endpoints": [f"127.0.0.1:{a.port}"], "protocol": "openai"},
        "llm-b": {"endpoints": [f"127.0.0.1:{b.port}"], "protocol": "openai"},
    }
    return config


def base(config: dict[str, Any]) -> str:
    return f"http://127.0.0.1:{config['listen']['port']}"


async def test_the_body_model_picks_the_cluster_and_an_alias_is_renamed(
    llm_a: Process, llm_b: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(llm_a, llm_b)
    async with make_gateway(config):
        client = openai.AsyncOpenAI(base_url=base(config) + "/v1", api_key="none", max_retries=0)
        big = await client.chat.completions.create(
            model="llama-70b", messages=[{"role": "user", "content": "hi"}]
        )
        assert big.system_fingerprint == "llm-b"
        mini = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert (mini.system_fingerprint, mini.model) == ("llm-a", "qwen2.5-7b")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{llm_a.port}/_last") as seen:
            sent = await seen.json()
        assert sent["model"] == "qwen2.5-7b"
        assert sent["messages"] == [{"role": "user", "content": "hi"}]
        await client.close()


async def test_models_lists_the_routed_models(
    llm_a: Process, llm_b: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(llm_a, llm_b)
    async with make_gateway(config):
        client = openai.AsyncOpenAI(base_url=base(config) + "/v1", api_key="none", max_retries=0)
        listed = [model.id async for model in client.models.list()]
        assert listed == ["gpt-4o-mini", "qwen2.5-7b", "llama-70b"]
        assert (await client.models.retrieve("llama-70b")).id == "llama-70b"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-a")
        await client.close()


async def test_an_unknown_model_is_a_404_in_openais_shape(
    llm_a: Process, llm_b: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(llm_a, llm_b)
    async with make_gateway(config):
        client = openai.AsyncOpenAI(base_url=base(config) + "/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.NotFoundError) as raised:
            await client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
        assert raised.value.code == "model_not_found"
        await client.close()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"messages": []}', "missing_model"),
        (b'{"model": 7}', "missing_model"),
    ],
)
async def test_a_body_without_a_model_is_a_400_in_openais_shape(
    llm_a: Process, llm_b: Process, make_gateway: Callable[[dict[str, Any]], Any], body: bytes, code: str
) -> None:
    config = llm_config(llm_a, llm_b)
    async with make_gateway(config), aiohttp.ClientSession() as http:
        url = base(config) + "/v1/chat/completions"
        async with http.post(url, data=body, headers={"content-type": "application/json"}) as answer:
            assert answer.status == 400
            error = (await answer.json())["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", code)
        assert error["message"]


async def test_a_body_sent_in_pieces_is_routed_once_whole(
    llm_a: Process, llm_b: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(llm_a, llm_b)

    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"model": "llama-70b", '
        yield b'"messages": [{"role": "user", "content": "hi"}]}'

    url = base(config) + "/v1/chat/completions"
    async with (
        make_gateway(config),
        aiohttp.ClientSession() as http,
        http.post(url, data=pieces()) as answer,
    ):
        assert answer.status == 200
        assert (await answer.json())["system_fingerprint"] == "llm-b"

"""turnout in front of fakellm, an OpenAI-compatible mock server from PyPI, run from its own venv
(`server_venvs.py`), with the official `openai` client: plain and streamed chat completions, the
body's model choosing the route and an alias renamed upstream, usage read from the server's answer,
`/v1/models` answered from the config, and a 5xx answer larger than the model-error hold-back limit.

fakellm answers from rules in a YAML file: the rule below answers ten words, streamed one chunk per
word 10 ms apart, so the test knows what arrives and when. It sends no usage chunk in a stream (it
ignores `stream_options`), so the streamed test checks the stream arrives whole and unchanged.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.conftest import gateway_config
from tests.interop.server_venvs import server_python
from tests.support.processes import Process, free_port, wait_until

_RULES = """\
version: 1
rules:
  - name: ten_words
    when: {messages_contain: "count to ten"}
    respond: {content: "one two three four five six seven eight nine ten"}
  - name: big_error
    when: {messages_contain: "fail loudly"}
    respond: {status: 500, error: "%s"}
"""
TEN_WORDS = "one two three four five six seven eight nine ten"
# Past the 64 KiB that model-error detection holds back to read (routing/resilience/model_errors.py).
BIG_ERROR_BYTES = 100 * 1024
# fakellm imports FastAPI and uvicorn; 60 s covers a loaded 2-core machine.
START_S = 60.0
# The first streamed chunk through turnout may trail the direct one by this much (the bound).
FIRST_CHUNK_SLACK_S = 0.05
# Each timing is the best of this many tries: on a busy machine one try can stall for a scheduler tick.
TRIES = 5


@pytest.fixture(scope="module")
def fakellm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    python = server_python("fakellm")
    workdir = tmp_path_factory.mktemp("fakellm")
    rules = workdir / "fakellm.yaml"
    rules.write_text(_RULES % ("x" * BIG_ERROR_BYTES))
    port = free_port()
    log_path = workdir / "fakellm.log"
    with open(log_path, "wb") as out:
        argv = [str(python), "-m", "fakellm.cli", "serve", "--config", str(rules), "--port", str(port)]
        proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    process = Process(proc, port, log_path)
    try:
        wait_until(
            lambda: proc.poll() is None and _answers(f"http://127.0.0.1:{port}/_fakellm/stats"),
            START_S,
            0.1,
            "fakellm to be ready",
        )
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"fakellm did not start:\n{process.log()}") from None
    yield process
    process.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def llm_config(server: Process, **cluster: Any) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{server.port}"],
        routes=[
            {
                "name": "mini",
                "match": {"prefix": "/v1", "model": "gpt-4o-mini"},
                "rewrite": {"model": "fake-small"},
                "backend": {"cluster": "fake"},
            },
            {
                "name": "small",
                "match": {"prefix": "/v1", "model": "fake-small"},
                "backend": {"cluster": "fake"},
            },
        ],
    )
    config["clusters"] = {
        "fake": {"endpoints": [f"127.0.0.1:{server.port}"], "protocol": "openai", **cluster}
    }
    return config


def client_of(port: int) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)


def ask(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def _stream(client: openai.AsyncOpenAI, model: str) -> tuple[float, list[tuple[float, str]]]:
    """Seconds to the first chunk with text, and each text chunk with its arrival time."""
    started = time.monotonic()
    pieces: list[tuple[float, str]] = []
    stream = await client.chat.completions.create(model=model, messages=ask("count to ten"), stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append((time.monotonic(), chunk.choices[0].delta.content))
    return pieces[0][0] - started, pieces


async def test_a_plain_completion_is_the_servers_with_its_usage_counted(
    fakellm: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(fakellm)
    direct = client_of(fakellm.port)
    async with make_gateway(config) as gateway:
        through = client_of(gateway.data_port)
        answer = await through.chat.completions.create(model="fake-small", messages=ask("count to ten"))
        expected = await direct.chat.completions.create(model="fake-small", messages=ask("count to ten"))
        assert answer.choices[0].message.content == expected.choices[0].message.content == TEN_WORDS
        assert answer.usage is not None and answer.usage == expected.usage
        registry = gateway.metrics.registry
        labels = {"tenant": "", "principal": "", "model": "fake-small", "route": "small"}
        assert registry.get_sample_value("turnout_llm_requests_total", labels) == 1.0
        counted = registry.get_sample_value("turnout_llm_prompt_tokens_total", labels)
        assert counted == answer.usage.prompt_tokens
        counted = registry.get_sample_value("turnout_llm_completion_tokens_total", labels)
        assert counted == answer.usage.completion_tokens
        await through.close()
    await direct.close()


async def test_an_alias_is_renamed_upstream_and_counted_under_the_clients_name(
    fakellm: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(fakellm)
    async with make_gateway(config) as gateway:
        client = client_of(gateway.data_port)
        # No rule matches: fakellm echoes the model it was asked for in its text.
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"))
        assert answer.model == "fake-small"
        assert answer.choices[0].message.content is not None
        assert answer.choices[0].message.content.startswith("[mock response for fake-small,")
        labels = {"tenant": "", "principal": "", "model": "gpt-4o-mini", "route": "mini"}
        assert gateway.metrics.registry.get_sample_value("turnout_llm_requests_total", labels) == 1.0
        with pytest.raises(openai.NotFoundError) as raised:
            await client.chat.completions.create(model="gpt-5", messages=ask("hi"))
        assert raised.value.code == "model_not_found"
        await client.close()


async def test_models_are_the_configs_where_the_server_lists_none(
    fakellm: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(fakellm)
    direct = client_of(fakellm.port)
    with pytest.raises(openai.NotFoundError):  # fakellm serves no /v1/models
        await direct.models.list()
    await direct.close()
    async with make_gateway(config) as gateway:
        client = client_of(gateway.data_port)
        assert [model.id async for model in client.models.list()] == ["gpt-4o-mini", "fake-small"]
        assert (await client.models.retrieve("gpt-4o-mini")).id == "gpt-4o-mini"
        await client.close()


async def test_a_stream_arrives_as_sent_and_its_first_chunk_as_soon_as_direct(
    fakellm: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    config = llm_config(fakellm)
    direct = client_of(fakellm.port)
    async with make_gateway(config) as gateway:
        through = client_of(gateway.data_port)
        direct_firsts, through_firsts = [], []
        for _ in range(TRIES):
            first, _pieces = await _stream(direct, "fake-small")
            direct_firsts.append(first)
            first, pieces = await _stream(through, "fake-small")
            through_firsts.append(first)
        await through.close()
    await direct.close()
    # Every word in its own chunk, in order, and spread over the server's pacing (10 ms a word):
    # nothing held the stream back to send it at once.
    assert [text for _, text in pieces] == [w if i == 0 else " " + w for i, w in enumerate(TEN_WORDS.split())]
    assert pieces[-1][0] - pieces[0][0] >= 0.05
    assert min(through_firsts) - min(direct_firsts) < FIRST_CHUNK_SLACK_S, (through_firsts, direct_firsts)


async def test_a_5xx_larger_than_the_hold_back_limit_leaves_the_connection_usable(
    fakellm: Process, make_gateway: Callable[[dict[str, Any]], Any]
) -> None:
    # One connection: every request after the error goes over the pooled one or a fresh one, never
    # two at once, so a connection left mid-answer would fail the next request.
    config = llm_config(fakellm, max_connections_per_endpoint=1, model_errors={})
    async with make_gateway(config) as gateway:
        client = client_of(gateway.data_port)
        for _ in range(3):
            with pytest.raises(openai.InternalServerError) as raised:
                await client.chat.completions.create(model="fake-small", messages=ask("fail loudly"))
            assert len(raised.value.response.content) > BIG_ERROR_BYTES
            answer = await client.chat.completions.create(model="fake-small", messages=ask("count to ten"))
            assert answer.choices[0].message.content == TEN_WORDS
            _first, pieces = await _stream(client, "fake-small")
            assert "".join(text for _, text in pieces) == TEN_WORDS
        await client.close()

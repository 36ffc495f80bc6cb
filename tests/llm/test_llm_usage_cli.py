"""`turnout usage` reads the token usage OpenAI routes recorded in the event store (SQLite, or Redis
with `state.backend: redis`), per tenant, principal, model and route, as JSON, CSV or a table."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import redis
import yaml

from experiments.store.redis_usage import PREFIX, RETENTION_S
from gateway.usage_ledger import RedisUsageLedger, SqliteUsageLedger, usage_rows
from tests.conftest import gateway_config
from tests.support.processes import ROOT, Process, free_port
from tests.support.redis_server import private_redis_server

KEYS = {"key-acme": ("alice", "acme"), "key-globex": ("bob", "globex")}


def usage(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "usage", *args], cwd=ROOT, capture_output=True, check=True
    )
    return done.stdout.decode()


def config_with_keys(a: Process, store: Path, redis_url: str | None = None) -> dict[str, Any]:
    keys = [
        {"sha256": hashlib.sha256(key.encode()).hexdigest(), "principal": who, "tenant": tenant}
        for key, (who, tenant) in KEYS.items()
    ]
    routes = [
        {
            "name": name,
            "match": {"prefix": "/v1", "model": name},
            "backend": {"cluster": "llm-a"},
            "filters": [{"auth_apikey": {"keys": keys}}],
        }
        for name in ("small", "large")
    ]
    state: dict[str, Any] = {"sqlite_path": str(store)}
    if redis_url is not None:
        state |= {"backend": "redis", "url": redis_url}
    config = gateway_config([f"127.0.0.1:{a.port}"], routes=routes, state=state)
    config["clusters"] = {"llm-a": {"endpoints": [f"127.0.0.1:{a.port}"], "protocol": "openai"}}
    return config


async def send_traffic(config: dict[str, Any], make_gateway: Callable[[dict[str, Any]], Any]) -> None:
    url = f"http://127.0.0.1:{config['listen']['port']}/v1"
    calls = [("key-acme", "small", "one two", False), ("key-acme", "small", "three", True)]
    calls += [("key-acme", "large", "four five six", False), ("key-globex", "small", "seven", True)]
    async with make_gateway(config):
        for key, model, prompt, stream in calls:
            llm = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0)
            messages: list[Any] = [{"role": "user", "content": prompt}]
            if stream:
                answer = await llm.chat.completions.create(model=model, messages=messages, stream=True)
                [chunk async for chunk in answer]
            else:
                await llm.chat.completions.create(model=model, messages=messages)
            await llm.close()


# The stand-in answers three words (tokens) to every prompt; a prompt's tokens are its words.
BY_TENANT_AND_MODEL = [
    {"tenant": "acme", "model": "small", "requests": 2, "prompt_tokens": 3, "completion_tokens": 6},
    {"tenant": "acme", "model": "large", "requests": 1, "prompt_tokens": 3, "completion_tokens": 3},
    {"tenant": "globex", "model": "small", "requests": 1, "prompt_tokens": 1, "completion_tokens": 3},
]


async def test_usage_by_tenant_and_model_after_real_traffic(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any], tmp_path: Path
) -> None:
    store = tmp_path / "events.db"
    await send_traffic(config_with_keys(llm_a, store), make_gateway)
    rows = orjson.loads(usage("--store", str(store), "--since", "1h", "--format", "json"))
    assert rows == BY_TENANT_AND_MODEL
    table = list(
        csv.reader(io.StringIO(usage("--store", str(store), "--by", "principal", "--format", "csv")))
    )
    assert table == [
        ["principal", "requests", "prompt_tokens", "completion_tokens"],
        ["alice", "3", "6", "9"],
        ["bob", "1", "1", "3"],
    ]


def test_rows_add_up_across_writers_and_respect_since(tmp_path: Path) -> None:
    store = tmp_path / "usage.db"
    for _ in range(2):  # two gateway processes sharing one file
        ledger = SqliteUsageLedger(store)
        ledger.record("acme", "alice", "m", "r", 10, 5)
        ledger.write(ledger.take())
    assert usage_rows(3600, ("tenant",), path=store) == [
        {"tenant": "acme", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10}
    ]
    assert usage_rows(3600, (), path=tmp_path / "absent.db") == []
    with pytest.raises(ValueError, match="cannot group by"):
        usage_rows(3600, ("tenant; DROP TABLE llm_usage",), path=store)


async def test_usage_in_redis_when_the_state_is_shared(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any], tmp_path: Path
) -> None:
    store = tmp_path / "never.db"
    with private_redis_server(tmp_path) as redis_url:
        config = config_with_keys(llm_a, store, redis_url)
        await send_traffic(config, make_gateway)
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        rows = orjson.loads(usage("--config", str(path), "--since", "24h", "--format", "json"))
        assert rows == BY_TENANT_AND_MODEL
        table = list(
            csv.reader(io.StringIO(usage("--redis", redis_url, "--by", "principal,route", "--format", "csv")))
        )
        assert table == [
            ["principal", "route", "requests", "prompt_tokens", "completion_tokens"],
            ["alice", "small", "2", "3", "6"],
            ["alice", "large", "1", "3", "3"],
            ["bob", "small", "1", "1", "3"],
        ]
    assert not store.exists()  # the SQLite store is not written when the state is in Redis


def test_redis_rows_add_up_across_writers_and_respect_since(tmp_path: Path) -> None:
    with private_redis_server(tmp_path) as redis_url:
        for _ in range(2):  # two gateway replicas sharing one Redis
            ledger = RedisUsageLedger(redis_url)
            ledger.record("acme", "alice", "m", "r", 10, 5)
            ledger.record("acme", "bob", "m", "r", 1, 0)
            ledger.write(ledger.take())
        old = RedisUsageLedger(redis_url)  # usage of two hours ago
        old.write({(int(time.time()) // 60 * 60 - 7200, "acme", "alice", "m", "r"): [1, 100, 100]})
        assert usage_rows(3600, ("tenant",), redis_url=redis_url) == [
            {"tenant": "acme", "requests": 4, "prompt_tokens": 22, "completion_tokens": 10}
        ]
        assert usage_rows(3 * 3600, ("principal",), redis_url=redis_url) == [
            {"principal": "alice", "requests": 3, "prompt_tokens": 120, "completion_tokens": 110},
            {"principal": "bob", "requests": 2, "prompt_tokens": 2, "completion_tokens": 0},
        ]
        # Every key expires on its own: a minute's hash 35 days after that minute, the index with it.
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        keys = client.keys(PREFIX + "*")
        assert PREFIX + "minutes" in keys and len(keys) >= 3  # the index and the minutes written
        assert all(0 < client.ttl(key) <= RETENTION_S for key in keys)
        client.close()


def test_redis_rows_wait_out_an_outage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with private_redis_server(tmp_path) as redis_url:
        ledger = RedisUsageLedger(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
        for _ in range(2):
            ledger.record("acme", "alice", "m", "r", 10, 5)
            ledger.write(ledger.take())  # kept, not raised: the gateway's flush goes on
        assert [r.message for r in caplog.records].count(
            "token usage cannot be written to Redis; held until it can"
        ) == 1
        ledger.url = redis_url  # Redis is back
        ledger.record("acme", "alice", "m", "r", 1, 1)
        ledger.write(ledger.take())
        assert usage_rows(3600, ("tenant",), redis_url=redis_url) == [
            {"tenant": "acme", "requests": 3, "prompt_tokens": 21, "completion_tokens": 11}
        ]
        ledger.write(ledger.take())  # nothing held any more: nothing counted twice
        assert usage_rows(3600, ("tenant",), redis_url=redis_url)[0]["requests"] == 3

"""`turnout usage` reads the token usage OpenAI routes recorded in the event store, per tenant,
principal, model and route, as JSON, CSV or a table."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from gateway.usage_ledger import UsageLedger, usage_rows
from tests.conftest import gateway_config
from tests.support.processes import ROOT, Process

KEYS = {"key-acme": ("alice", "acme"), "key-globex": ("bob", "globex")}


def usage(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "usage", *args], cwd=ROOT, capture_output=True, check=True
    )
    return done.stdout.decode()


def config_with_keys(a: Process, store: Path) -> dict[str, Any]:
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
    config = gateway_config([f"127.0.0.1:{a.port}"], routes=routes, state={"sqlite_path": str(store)})
    config["clusters"] = {"llm-a": {"endpoints": [f"127.0.0.1:{a.port}"], "protocol": "openai"}}
    return config


async def test_usage_by_tenant_and_model_after_real_traffic(
    llm_a: Process, make_gateway: Callable[[dict[str, Any]], Any], tmp_path: Path
) -> None:
    store = tmp_path / "events.db"
    config = config_with_keys(llm_a, store)
    url = f"http://127.0.0.1:{config['listen']['port']}/v1"
    calls = [("key-acme", "small", "one two", False), ("key-acme", "small", "three", True)]
    calls += [("key-acme", "large", "four five six", False), ("key-globex", "small", "seven", True)]
    async with make_gateway(config):
        for key, model, prompt, stream in calls:
            llm = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0)
            messages = [{"role": "user", "content": prompt}]
            if stream:
                answer = await llm.chat.completions.create(model=model, messages=messages, stream=True)
                [chunk async for chunk in answer]
            else:
                await llm.chat.completions.create(model=model, messages=messages)
            await llm.close()
    # The stand-in answers three words (tokens) to every prompt; a prompt's tokens are its words.
    rows = orjson.loads(usage("--store", str(store), "--since", "1h", "--format", "json"))
    assert rows == [
        {"tenant": "acme", "model": "small", "requests": 2, "prompt_tokens": 3, "completion_tokens": 6},
        {"tenant": "acme", "model": "large", "requests": 1, "prompt_tokens": 3, "completion_tokens": 3},
        {"tenant": "globex", "model": "small", "requests": 1, "prompt_tokens": 1, "completion_tokens": 3},
    ]
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
        ledger = UsageLedger(store)
        ledger.record("acme", "alice", "m", "r", 10, 5)
        ledger.write(ledger.take())
    assert usage_rows(store, 3600, ("tenant",)) == [
        {"tenant": "acme", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10}
    ]
    assert usage_rows(tmp_path / "absent.db", 3600, ()) == []
    with pytest.raises(ValueError, match="cannot group by"):
        usage_rows(store, 3600, ("tenant; DROP TABLE llm_usage",))

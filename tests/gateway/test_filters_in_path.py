"""Filters in the data path: phases in order, answers, async hooks, body rewriting, plugins by path."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import gateway_config
from tests.support.processes import Process


def _route(filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": "r", "match": {"prefix": "/"}, "backend": {"cluster": "up"}, "filters": filters}]


@pytest.mark.parametrize("guard", ["GUARD", "ASYNC_GUARD"])
async def test_a_request_filter_answers_or_lets_through(
    make_gateway: Any, upstream_a: Process, guard: str
) -> None:
    filters = [{"plugin": f"tests.support.plugins:{guard}", "config": {"header": "x-pass", "delay_ms": 5}}]
    if guard == "GUARD":
        filters[0]["config"].pop("delay_ms")
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=_route(filters))
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        async with session.get(url) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "missing x-pass"
            assert response.headers["x-guarded"] == "yes"  # response phases run on answers too
            assert response.headers["x-request-id"]
        async with session.get(url, headers={"x-pass": "1"}) as response:
            assert response.status == 200
            assert (await response.json())["name"] == "a"
            assert response.headers["x-guarded"] == "yes"
        guard_filter = gw.runtime.routes[0].filters.filters[0]
        assert guard_filter.logged == [401, 200]


async def test_body_filters_rewrite_request_and_response(make_gateway: Any, upstream_a: Process) -> None:
    filters = [{"plugin": "tests.support.plugins:BODY_UPPER"}]
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=_route(filters))
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{gw.data_port}/echo", data=b"hello") as response:
            text = await response.text()
        body, _, marker = text.partition("\n")
        assert json.loads(body)["body"] == "HELLO"
        assert json.loads(body)["body_length"] == 5
        assert marker == "-- seen by body_upper"
        assert int(response.headers["content-length"]) == len(text.encode())


async def test_unknown_filters_and_bad_options_are_refused_at_load(tmp_path: Any) -> None:
    from gateway.config import ConfigError
    from gateway.loading import load_gateway_config

    path = tmp_path / "bad.yaml"
    path.write_text(
        "clusters: {up: {endpoints: [127.0.0.1:9]}}\n"
        "routes:\n"
        "  - backend: {cluster: up}\n"
        "    filters:\n"
        "      - no_such_filter: {}\n"
        "      - plugin: tests.support.plugins:GUARD\n"
        "        config: {header: 3, colour: red}\n"
        "      - plugin: tests.support.missing:NOTHING\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_gateway_config(path)
    errors = refused.value.errors
    assert any(e.startswith(f"{path}:5:") and "unknown filter 'no_such_filter'" in e for e in errors)
    assert any(e.startswith(f"{path}:7:") and "colour" in e for e in errors)
    assert any(e.startswith(f"{path}:7:") and "header" in e for e in errors)
    assert any(e.startswith(f"{path}:8:") and "cannot import plugin module" in e for e in errors)

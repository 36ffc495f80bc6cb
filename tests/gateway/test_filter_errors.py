"""A filter that raises never leaves a client without an answer, nor charges the upstream for it.

A third-party filter with a bug on purpose (tests/support/faulty_filters.py) is loaded by import path
into real gateways in front of real upstreams. Whatever phase raises, however the hook is declared,
whether the answer is streamed or buffered: the client gets a 500 naming the filter within a second,
the logging phase runs once, the access log and `turnout_filter_errors_total` name the filter and
phase, the endpoint is not charged, and the next request is served.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client import generate_latest

from tests.conftest import gateway_config
from tests.support.processes import Process, free_port, start_gateway

PLUGIN = "tests.support.faulty_filters:FAULTY"
# The failing request must be answered well within this (the contract: under a second).
ANSWER_WITHIN_S = 1.0


def _route(filters: list[dict[str, Any]], name: str = "r", prefix: str = "/") -> dict[str, Any]:
    return {"name": name, "match": {"prefix": prefix}, "backend": {"cluster": "up"}, "filters": filters}


def _faulty(**config: Any) -> dict[str, Any]:
    return {"plugin": PLUGIN, "config": {"path": "/stream", **config}}


async def _timed_get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, float]:
    began = time.monotonic()
    async with session.get(url) as response:
        body = await response.read()
    return response.status, body, time.monotonic() - began


async def _admin(session: aiohttp.ClientSession, port: int, path: str) -> str:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        return await response.text()


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _endpoint_uncharged(clusters: str) -> None:
    for endpoint in json.loads(clusters)["up"]["endpoints"]:
        assert endpoint["available"] and endpoint["healthy"], endpoint
        assert endpoint["total_failures"] == 0 and endpoint["ejection_count"] == 0, endpoint
        assert endpoint["inflight"] == 0, endpoint


def _log_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _wait_for_log(path: Path, count: int) -> list[dict[str, Any]]:
    """The access log is flushed by a timer: wait until it holds `count` lines."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(lines := _log_lines(path)) >= count:
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"the access log did not reach {count} lines")


@pytest.mark.parametrize("buffer", [False, True], ids=["streamed", "buffered"])
@pytest.mark.parametrize("mode", ["sync", "async", "awaitable"])
@pytest.mark.parametrize("phase", ["request", "response"])
async def test_a_raising_hook_gets_the_client_a_500_naming_the_filter(
    make_gateway: Any, upstream_a: Process, tmp_path: Path, phase: str, mode: str, buffer: bool
) -> None:
    log_path = tmp_path / "access.log"
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[_route([_faulty(phase=phase, mode=mode, buffer=buffer)])],
        access_log={"enabled": True, "path": str(log_path)},
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gw.data_port}"
        status, body, took = await _timed_get(session, f"{base}/stream?chunks=3&size=64&ms=20")
        assert status == 500
        assert took < ANSWER_WITHIN_S
        assert json.loads(body) == {
            "error": f"filter '{PLUGIN}' failed",
            "code": "filter_error",
            "filter": PLUGIN,
        }
        async with session.get(f"{base}/echo") as response:  # the gateway goes on serving
            assert response.status == 200
            assert response.headers["x-faulty"] == "passed"
        metrics = await _admin(session, gw.admin_port, "/metrics")
        assert _metric(metrics, "turnout_filter_errors_total", route="r", filter=PLUGIN, phase=phase) == 1
        assert _metric(metrics, "turnout_requests_total", route="r", status_class="5xx") == 1
        _endpoint_uncharged(await _admin(session, gw.admin_port, "/admin/clusters"))
        assert gw.runtime.routes[0].filters.filters[0].logged == [500, 200]  # finish ran once each
        failed, served = await _wait_for_log(log_path, 2)
        assert failed["status"] == 500 and served["status"] == 200
        assert failed["error"] == (
            f"filter '{PLUGIN}' failed in its {phase} phase: FilterBug: on_{phase} broke"
        )


async def test_a_raising_logging_hook_is_logged_and_swallowed(
    make_gateway: Any, upstream_a: Process, caplog: pytest.LogCaptureFixture
) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=[_route([_faulty(phase="log")])])
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gw.data_port}"
        for _ in range(2):
            async with session.get(f"{base}/stream?chunks=2&size=8") as response:
                assert response.status == 200
                await response.read()
        metrics = await _admin(session, gw.admin_port, "/metrics")
    assert _metric(metrics, "turnout_filter_errors_total", route="r", filter=PLUGIN, phase="log") == 2
    assert any("in its log phase: FilterBug: on_log broke" in r.getMessage() for r in caplog.records)


async def test_an_exception_in_the_gateways_own_code_still_ends_the_request(
    make_gateway: Any, upstream_a: Process
) -> None:
    """A header value no HTTP/1.1 head can carry fails in the proxy itself, after the filters."""
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=[_route([_faulty(phase="header")])])
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gw.data_port}"
        status, body, took = await _timed_get(session, f"{base}/stream?chunks=3&ms=20")
        assert status == 500 and json.loads(body)["code"] == "internal"
        assert took < ANSWER_WITHIN_S
        status, _, _ = await _timed_get(session, f"{base}/echo")
        assert status == 200
        _endpoint_uncharged(await _admin(session, gw.admin_port, "/admin/clusters"))
        assert gw.runtime.routes[0].filters.filters[0].logged == [500, 200]


async def test_a_filter_that_fails_to_start_closes_its_route_and_only_it(
    make_gateway: Any, upstream_a: Process
) -> None:
    routes = [_route([_faulty(phase="start")], "broken", "/stream"), _route([_faulty(phase="stop")], "fine")]
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=routes)
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gw.data_port}"
        status, body, _ = await _timed_get(session, f"{base}/stream")
        assert status == 500 and json.loads(body)["filter"] == PLUGIN
        status, _, _ = await _timed_get(session, f"{base}/echo")
        assert status == 200
        metrics = await _admin(session, gw.admin_port, "/metrics")
    assert _metric(metrics, "turnout_filter_errors_total", route="broken", phase="start") == 1
    # The gateway stopped cleanly although a filter's stop raised; the failure was counted.
    after_stop = generate_latest(gw.registry).decode()
    assert _metric(after_stop, "turnout_filter_errors_total", route="fine", phase="stop") == 1


async def test_a_reload_retries_a_filter_that_failed_to_start(
    make_gateway: Any, upstream_a: Process, tmp_path: Path
) -> None:
    """Even a filter whose chain may outlive reloads is rebuilt after it failed to start."""
    flag = tmp_path / "redis-is-down"
    flag.write_text("")
    faulty = _faulty(phase="start", start_fails_while=str(flag), keeps_state=True)
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=[_route([faulty])])
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        status, _, _ = await _timed_get(session, url)
        assert status == 500
        flag.unlink()
        assert await gw.reload("test") == []
        status, _, _ = await _timed_get(session, url)
        assert status == 200


@asynccontextmanager
async def _oip_upstream() -> AsyncIterator[int]:
    """An OIP v2 model server on loopback that answers one output per row (for batching)."""

    async def infer(request: web.Request) -> web.Response:
        rows = (await request.json())["inputs"][0]["shape"][0]
        output = {"name": "y", "datatype": "FP32", "shape": [rows, 1], "data": [1.0] * rows}
        return web.json_response({"model_name": request.match_info["model"], "outputs": [output]})

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("phase", ["request", "response"])
async def test_a_raising_hook_on_a_batching_route(make_gateway: Any, phase: str) -> None:
    filters = [_faulty(phase=phase, path="/v2/models/bad"), {"batching": {"max_batch_size": 4}}]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}
    async with _oip_upstream() as port:
        config = gateway_config([f"127.0.0.1:{port}"], routes=[_route(filters)])
        async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{gw.data_port}"
            async with session.post(f"{base}/v2/models/bad/infer", json=body) as response:
                assert response.status == 500
                assert (await response.json())["filter"] == PLUGIN
            async with session.post(f"{base}/v2/models/good/infer", json=body) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["outputs"][0]["data"] == [1.0]
            metrics = await _admin(session, gw.admin_port, "/metrics")
            _endpoint_uncharged(await _admin(session, gw.admin_port, "/admin/clusters"))
            assert gw.runtime.routes[0].filters.filters[0].logged == [500, 200]
    assert _metric(metrics, "turnout_filter_errors_total", route="r", filter=PLUGIN, phase=phase) == 1


@pytest.mark.parametrize("phase", ["request", "response"])
async def test_a_raising_hook_on_an_experiment_route(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path, phase: str
) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=[])
    config["routes"] = [{"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}]
    config["routes"][0]["filters"] = [_faulty(phase=phase, mode="async")]
    config["clusters"] = {
        "up": {"endpoints": [f"127.0.0.1:{upstream_a.port}"]},
        "b": {"endpoints": [f"127.0.0.1:{upstream_b.port}"]},
    }
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": ["header:x-user-id"],
            "arms": {"control": {"cluster": "up", "weight": 50}, "treatment": {"cluster": "b", "weight": 50}},
        }
    }
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gw.data_port}"
        for user in range(6):
            headers = {"x-user-id": f"user-{user}"}
            async with session.get(f"{base}/stream?chunks=2", headers=headers) as response:
                assert response.status == 500
                assert (await response.json())["filter"] == PLUGIN
            async with session.get(f"{base}/echo", headers=headers) as response:
                assert response.status == 200
                assert response.headers["x-turnout-experiment"] == "exp"
        metrics = await _admin(session, gw.admin_port, "/metrics")
        clusters = json.loads(await _admin(session, gw.admin_port, "/admin/clusters"))
    assert _metric(metrics, "turnout_filter_errors_total", route="ab", filter=PLUGIN, phase=phase) == 6
    for cluster in clusters.values():
        assert all(e["total_failures"] == 0 and e["inflight"] == 0 for e in cluster["endpoints"])


async def test_the_contract_check_on_a_gateway_process(upstream_a: Process, tmp_path: Path) -> None:
    """As an operator would run it: `turnout run` with the plugin on PYTHONPATH (tests/support)."""
    port, admin = free_port(), free_port()
    routes = [
        _route([_faulty(mode="sync", path="/sync")], "sync", "/sync"),
        _route([_faulty(mode="async", path="/async")], "async", "/async"),
        _route([_faulty(phase="response", path="/response")], "response", "/response"),
        _route([], "plain"),
    ]
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=routes)
    config["listen"]["port"], config["admin"]["port"] = port, admin
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, port, admin, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            for prefix in ("/sync", "/async", "/response"):
                status, _, took = await _timed_get(session, f"{gateway.url}{prefix}/x")
                assert 500 <= status < 600 and took < ANSWER_WITHIN_S, (prefix, status, took)
            status, _, _ = await _timed_get(session, f"{gateway.url}/echo")
            assert status == 200
            _endpoint_uncharged(await _admin(session, admin, "/admin/clusters"))
    finally:
        gateway.stop()
    # The gateway's log names each filter, phase and exception, with the traceback.
    for phase in ("request", "request", "response"):
        assert f"filter '{PLUGIN}' failed in its {phase} phase: FilterBug: on_{phase} broke" in gateway.log()
    assert "Traceback" in gateway.log()

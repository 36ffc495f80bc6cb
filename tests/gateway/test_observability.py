"""Metrics and the access log as an operator reads them, after real traffic through a gateway on loopback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway_config
from tests.support.processes import Process

# Deadline for polled conditions (an access-log flush every 0.5 s, an in-flight gauge): far above
# what a loaded 2-core machine needs, so a timeout means the condition never came.
POLL_TIMEOUT_S = 5.0
# Poll cadence: short enough to keep tests quick, long enough not to spin the event loop.
POLL_INTERVAL_S = 0.02

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _wait_for(condition: Callable[[], Awaitable[bool]], message: str) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"timed out waiting for {message}")


async def _scrape(session: aiohttp.ClientSession, admin: str) -> Samples:
    """Every sample of /metrics by (sample name, labels); parsing it proves the exposition is valid."""
    async with session.get(f"{admin}/metrics") as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def _status(session: aiohttp.ClientSession, url: str, method: str = "GET") -> int:
    # Admin calls that change state say they send JSON, as the admin API requires.
    headers = {"Content-Type": "application/json"} if method != "GET" else {}
    async with session.request(method, url, headers=headers) as response:
        await response.read()
        return response.status


async def test_metrics_count_requests_latency_endpoint_state_rejections_and_reloads(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    a, b = f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"
    config = gateway_config(
        [a, b],
        cluster={"retry": {"attempts": 0}, "circuit_breaker": {"max_concurrent": 1}},
        routes=[
            {
                "name": "api",
                "match": {"prefix": "/api/"},
                "rewrite": {"prefix": "/"},
                "backend": {"cluster": "up"},
            },
            {"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "up"}},
        ],
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        data = f"http://127.0.0.1:{gw.data_port}"
        assert await _status(session, f"{admin}/admin/clusters/up/endpoints/{b}/drain", "POST") == 200
        for path, expected in (
            ("/echo", 200),
            ("/echo", 200),
            ("/api/echo", 200),
            ("/status/404", 404),
            ("/status/503", 503),
        ):
            assert await _status(session, data + path) == expected, path

        slow = asyncio.create_task(_status(session, f"{data}/slow?ms=400"))

        async def in_flight() -> bool:
            samples = await _scrape(session, admin)
            return _value(samples, "turnout_endpoint_inflight", cluster="up", endpoint=a) == 1

        await _wait_for(in_flight, "the in-flight gauge to show the slow request")
        assert await _status(session, f"{data}/echo") == 503  # over the breaker's one place
        assert await slow == 200

        samples = await _scrape(session, admin)
        requests = "turnout_requests_total"
        for klass, count in (("1xx", 0), ("2xx", 3), ("3xx", 0), ("4xx", 1), ("5xx", 2)):
            assert _value(samples, requests, route="all", cluster="up", status_class=klass) == count, klass
        assert _value(samples, requests, route="api", cluster="up", status_class="2xx") == 1

        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (name, labels), value in samples.items()
            if name == "turnout_request_duration_seconds_bucket" and dict(labels)["route"] == "all"
        )
        counts = [value for _, value in buckets]
        assert buckets[-1] == (float("inf"), 6)  # every answered request of the route, the 503s too
        assert counts == sorted(counts)  # cumulative
        assert dict(buckets)[0.25] <= 5  # the 400 ms request is above 250 ms
        duration = {"route": "all", "cluster": "up"}
        assert _value(samples, "turnout_request_duration_seconds_count", **duration) == 6
        assert _value(samples, "turnout_request_duration_seconds_sum", **duration) >= 0.4

        assert _value(samples, "turnout_endpoint_healthy", cluster="up", endpoint=a) == 1
        assert _value(samples, "turnout_endpoint_healthy", cluster="up", endpoint=b) == 0  # drained
        assert _value(samples, "turnout_endpoint_inflight", cluster="up", endpoint=a) == 0
        assert _value(samples, "turnout_circuit_breaker_rejections_total", cluster="up") == 1

        assert await _status(session, f"{admin}/admin/reload", "POST") == 200
        assert gw.config_path is not None
        broken = dict(config, routes=[{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "x"}}])
        gw.config_path.write_text(yaml.safe_dump(broken))
        assert await _status(session, f"{admin}/admin/reload", "POST") == 400
        samples = await _scrape(session, admin)
        assert _value(samples, "turnout_config_reloads_total", result="ok") == 1
        assert _value(samples, "turnout_config_reloads_total", result="refused") == 1
        # A reload keeps the counters: they never go backwards.
        assert _value(samples, requests, route="all", cluster="up", status_class="2xx") == 3


async def test_metrics_of_two_gateways_in_one_process_are_apart(
    make_gateway: Any, upstream_a: Process
) -> None:
    first = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    second = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    async with make_gateway(first) as one, make_gateway(second) as two, aiohttp.ClientSession() as session:
        for _ in range(3):
            assert await _status(session, f"http://127.0.0.1:{one.data_port}/echo") == 200
        counts = []
        for gw in (one, two):
            samples = await _scrape(session, f"http://127.0.0.1:{gw.admin_port}")
            counts.append(
                _value(samples, "turnout_requests_total", route="all", cluster="up", status_class="2xx")
            )
        assert counts == [3, 0]


async def test_access_log_writes_one_json_line_per_request(
    make_gateway: Any, upstream_a: Process, tmp_path: Path
) -> None:
    log_path = tmp_path / "access.log"
    a = f"127.0.0.1:{upstream_a.port}"
    config = gateway_config(
        [a],
        cluster={"retry": {"attempts": 1, "on": [503], "backoff_base": "1ms", "budget_percent": 100}},
        access_log={"enabled": True, "path": str(log_path)},
    )
    fail_once = f"/fail-once/{uuid.uuid4().hex}"  # the session's upstream remembers keys it has seen
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        data = f"http://127.0.0.1:{gw.data_port}"
        received: dict[str, int] = {}
        for request_id, method, path, body in (
            ("req-get", "GET", "/echo", b""),
            ("req-post", "POST", "/echo", b"p" * 300),
            ("req-retry", "GET", fail_once, b""),
            ("req-big", "GET", "/big?size=1000", b""),
            ("req-missing", "GET", "/status/404", b""),
        ):
            async with session.request(
                method, data + path, data=body or None, headers={"x-request-id": request_id}
            ) as response:
                received[request_id] = len(await response.read())

        async def all_lines_written() -> bool:
            return log_path.exists() and log_path.read_bytes().count(b"\n") >= len(received)

        await _wait_for(all_lines_written, "the access log flush")
        lines = log_path.read_bytes().splitlines()
    assert len(lines) == len(received)  # one line per request, nothing more on shutdown
    entries = {entry["request_id"]: entry for entry in map(json.loads, lines)}
    assert set(entries) == set(received)
    for request_id, entry in entries.items():
        assert entry["route"] == "all" and entry["cluster"] == "up" and entry["endpoint"] == a, entry
        assert entry["bytes_out"] == received[request_id], entry
        assert 0 < entry["upstream_ms"] <= entry["duration_ms"], entry
        assert entry["duration_ms"] < 5000, entry
    assert [entries[r]["status"] for r in ("req-get", "req-post", "req-retry", "req-big", "req-missing")] == [
        200,
        200,
        200,
        200,
        404,
    ]
    assert {r: entries[r]["bytes_in"] for r in ("req-get", "req-post")} == {"req-get": 0, "req-post": 300}
    assert entries["req-big"]["bytes_out"] == 1000
    assert {r: entries[r]["retries"] for r in entries} == {
        "req-get": 0,
        "req-post": 0,
        "req-retry": 1,
        "req-big": 0,
        "req-missing": 0,
    }
    assert entries["req-post"]["method"] == "POST" and entries["req-retry"]["path"] == fail_once

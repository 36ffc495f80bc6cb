"""Endpoints named by DNS: the gateway resolves them, serves through them and keeps them fresh."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from routing.discovery.dns import DnsDiscovery
from tests.conftest import gateway_config
from tests.support.processes import Process

# Deadline for the refresh rounds the test waits for: far above what a loaded 2-core machine needs.
POLL_TIMEOUT_S = 5.0
# Poll cadence: short enough to keep the test quick, long enough not to spin the event loop.
POLL_INTERVAL_S = 0.02


async def _clusters(session: aiohttp.ClientSession, admin: str) -> dict[str, Any]:
    async with session.get(f"{admin}/admin/clusters") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_localhost_endpoint_is_resolved_and_serves(make_gateway: Any, upstream_a: Process) -> None:
    # Where localhost also resolves to ::1, that address refuses (the upstream binds 127.0.0.1 only):
    # a retry on connect failure keeps every request answered there too.
    config = gateway_config(
        [f"localhost:{upstream_a.port}"], cluster={"retry": {"attempts": 2, "on": ["connect_failure"]}}
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        endpoints = (await _clusters(session, f"http://127.0.0.1:{gw.admin_port}"))["up"]["endpoints"]
        assert f"127.0.0.1:{upstream_a.port}" in [e["address"] for e in endpoints]
        assert {e["hostname"] for e in endpoints} == {"localhost"}
        for _ in range(4):
            async with session.get(f"http://127.0.0.1:{gw.data_port}/echo") as response:
                assert response.status == 200
                assert (await response.json())["name"] == "a"


async def test_dns_refresh_keeps_resolved_state_and_endpoints_added_by_an_operator(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    a = f"127.0.0.1:{upstream_a.port}"
    b = f"127.0.0.1:{upstream_b.port}"
    config = gateway_config([f"localhost:{upstream_a.port}"], cluster={"dns_refresh": "50ms"})
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        async with session.post(f"{admin}/admin/clusters/up/endpoints", json={"address": b}) as response:
            assert response.status == 201
        resolved = [
            e["address"] for e in (await _clusters(session, admin))["up"]["endpoints"] if e["hostname"]
        ]
        assert a in resolved
        for address in resolved:  # 127.0.0.1, and ::1 where localhost has both
            drain = f"{admin}/admin/clusters/up/endpoints/{address}/drain"
            async with session.post(drain, json={}) as response:
                assert response.status == 200
        discovery = next(t for t in gw.runtime.clusters["up"].background if isinstance(t, DnsDiscovery))
        target = discovery.resolutions + 3
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while discovery.resolutions < target:
            assert time.monotonic() < deadline, "DNS discovery stopped refreshing"
            await asyncio.sleep(POLL_INTERVAL_S)
        endpoints = {e["address"]: e for e in (await _clusters(session, admin))["up"]["endpoints"]}
        # The operator's endpoint survives the refreshes; the resolved ones keep their drained state.
        assert endpoints[b]["hostname"] is None
        assert sorted(address for address, e in endpoints.items() if e["hostname"] == "localhost") == sorted(
            resolved
        )
        assert all(endpoints[address]["drained"] for address in resolved)
        for _ in range(3):
            async with session.get(f"http://127.0.0.1:{gw.data_port}/echo") as response:
                assert (await response.json())["name"] == "b"

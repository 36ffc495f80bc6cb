from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from routing.balancers.round_robin import RoundRobinFactory
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.health.active import HttpHealthChecker, body_says_ready

# Fast checks keep the tests short; the deadline only bounds a failing test.
INTERVAL = 0.02
DEADLINE_S = 3.0


class HealthServer:
    """A real HTTP server on loopback whose readiness answer the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.delay = 0.0
        self.hits = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _ready(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, body=self.body, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v2/health/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def servers() -> AsyncIterator[list[HealthServer]]:
    started = [HealthServer(), HealthServer()]
    for server in started:
        await server.start()
    yield started
    for server in started:
        await server.stop()


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


def cluster_for(servers: list[HealthServer]) -> tuple[EndpointSet, list[Endpoint]]:
    eps = [Endpoint(host="127.0.0.1", port=s.port) for s in servers]
    return EndpointSet("c", eps, RoundRobinFactory(random.Random(1)), panic_threshold_percent=0), eps


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_empty_200_style_flips_out_and_back(servers: list[HealthServer]) -> None:
    cluster, eps = cluster_for(servers)
    checker = HttpHealthChecker(cluster, interval=INTERVAL, timeout=0.5, unhealthy_threshold=2)
    async with checker:
        await eventually(lambda: servers[0].hits >= 2 and servers[1].hits >= 2)
        assert cluster.eligible == tuple(eps)
        servers[0].status = 503
        await eventually(lambda: not eps[0].active_healthy)
        assert cluster.eligible == (eps[1],)
        assert checker.last_check[eps[0].address].status == 503
        returned_before = time.monotonic()
        servers[0].status = 200
        await eventually(lambda: eps[0].active_healthy)
        assert eps[0].available_since >= returned_before  # slow start begins at the return
        assert cluster.eligible == tuple(eps)


async def test_ready_json_style(servers: list[HealthServer]) -> None:
    cluster, eps = cluster_for(servers)
    servers[0].body = b'{"ready": true}'
    servers[1].body = b'{"ready": false}'
    async with HttpHealthChecker(cluster, interval=INTERVAL, timeout=0.5, unhealthy_threshold=1):
        await eventually(lambda: not eps[1].active_healthy)
        assert eps[0].active_healthy
        servers[1].body = b'{"ready": true, "model": "m"}'
        await eventually(lambda: eps[1].active_healthy)


async def test_thresholds_are_honoured(servers: list[HealthServer]) -> None:
    cluster, eps = cluster_for(servers)
    checker = HttpHealthChecker(cluster, timeout=0.5, unhealthy_threshold=3, healthy_threshold=2)
    await checker.start()  # the default interval is long: this test drives the checks itself
    try:
        servers[0].status = 500
        for expected in (True, True, False):
            checker.record(eps[0], await checker.check(eps[0]))
            assert eps[0].active_healthy is expected
        servers[0].status = 200
        checker.record(eps[0], await checker.check(eps[0]))
        assert not eps[0].active_healthy
        servers[0].status = 500  # a failure between successes restarts the healthy streak
        checker.record(eps[0], await checker.check(eps[0]))
        servers[0].status = 200
        checker.record(eps[0], await checker.check(eps[0]))
        assert not eps[0].active_healthy
        checker.record(eps[0], await checker.check(eps[0]))
        assert eps[0].active_healthy
    finally:
        await checker.stop()


async def test_refused_connection_and_timeout_are_failures(servers: list[HealthServer]) -> None:
    dead = Endpoint(host="127.0.0.1", port=free_port())
    slow = Endpoint(host="127.0.0.1", port=servers[0].port)
    servers[0].delay = 0.3
    cluster = EndpointSet("c", [dead, slow], RoundRobinFactory(), panic_threshold_percent=0)
    checker = HttpHealthChecker(cluster, timeout=0.1)
    async with checker:
        refused = await checker.check(dead)
        timed_out = await checker.check(slow)
    assert not refused.healthy and refused.status is None and refused.error
    assert not timed_out.healthy and timed_out.error == "TimeoutError"


async def test_unexpected_status_is_unhealthy_and_expected_ones_are_configurable(
    servers: list[HealthServer],
) -> None:
    cluster, eps = cluster_for(servers)
    servers[0].status = 204
    async with HttpHealthChecker(cluster, timeout=0.5) as strict:
        assert not (await strict.check(eps[0])).healthy
    async with HttpHealthChecker(cluster, timeout=0.5, expected_statuses=(200, 204)) as lenient:
        assert (await lenient.check(eps[0])).healthy


async def test_follows_membership_changes(servers: list[HealthServer]) -> None:
    cluster, eps = cluster_for(servers[:1])
    checker = HttpHealthChecker(cluster, interval=INTERVAL, timeout=0.5)
    async with checker:
        late = Endpoint(host="127.0.0.1", port=servers[1].port)
        cluster.add(late)
        await eventually(lambda: late.address in checker.last_check)
        cluster.remove(eps[0].address)
        await eventually(lambda: eps[0].address not in checker.last_check)
        hits = servers[0].hits
        await asyncio.sleep(INTERVAL * 5)
        assert servers[0].hits <= hits + 1  # at most a check that was already under way
        assert set(checker.snapshot()) == {late.address}


@pytest.mark.parametrize(
    ("body", "ready"),
    [
        (b"", True),
        (b"  \n", True),
        (b"OK", True),
        (b'{"ready": true}', True),
        (b'{"ready": false}', False),
        (b'{"status": "SERVING"}', True),
        (b"[false]", True),
        (b'{"ready": "false"}', True),
    ],
)
def test_body_rules(body: bytes, ready: bool) -> None:
    assert body_says_ready(body) is ready

"""The gateway keeps serving through upstream failures, reloads and shutdown: real processes only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import gateway_config
from tests.support.processes import GatewayProcess, Process, start_gateway, start_upstream, wait_until


class Load:
    """Bounded background load: `workers` clients sending GETs until stopped; counts every outcome."""

    def __init__(self, url: str, workers: int = 8) -> None:
        self.url = url
        self.workers = workers
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.names: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                async with self._session.get(self.url) as response:
                    body = await response.read()
                    self.statuses[response.status] += 1
                    if response.status == 200:
                        self.names[json.loads(body)["name"]] += 1
            except aiohttp.ClientError as exc:
                self.errors.append(repr(exc))

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._session.close()

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    @property
    def failures(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200) + len(self.errors)


def _endpoint_healthy(gateway: GatewayProcess, port: int) -> bool:
    endpoints = _admin_json(gateway, "/admin/clusters")["up"]["endpoints"]
    return bool(next(e for e in endpoints if e["address"] == f"127.0.0.1:{port}")["healthy"])


def _admin_json(gateway: GatewayProcess, path: str, method: str = "GET") -> Any:
    # Admin calls that change state say they send JSON, as the admin API requires.
    headers = {"Content-Type": "application/json"} if method != "GET" else {}
    request = urllib.request.Request(gateway.admin_url + path, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def two_upstreams(session_logs: Path) -> Iterator[tuple[Process, Process]]:
    a = start_upstream("a", log_dir=session_logs)
    b = start_upstream("b", log_dir=session_logs)
    yield a, b
    a.stop()
    b.stop()


def _write(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config))


def _resilient_config(a: Process, b: Process) -> dict[str, Any]:
    return gateway_config(
        [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
        cluster={
            "health": {
                "path": "/healthz",
                "interval": "200ms",
                "timeout": "200ms",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
            },
            "outlier": {"consecutive_failures": 3, "base_ejection_time": "500ms"},
            "retry": {
                "attempts": 2,
                "on": ["connect_failure", "reset", "503"],
                "backoff_base": "1ms",
                "budget_percent": 100,
            },
        },
    )


async def test_killed_upstream_is_ejected_and_readmitted_without_failed_requests(
    tmp_path: Path, two_upstreams: tuple[Process, Process], session_logs: Path
) -> None:
    a, b = two_upstreams
    config = _resilient_config(a, b)
    path = tmp_path / "gw.yaml"
    _write(path, config)
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    try:
        async with Load(f"{gateway.url}/echo") as load:
            await asyncio.sleep(0.5)
            a.kill()
            await asyncio.to_thread(
                wait_until, lambda: not _endpoint_healthy(gateway, a.port), 10, message="ejection of a"
            )
            served_by_b_before = load.names["b"]
            await asyncio.sleep(0.5)
            assert load.names["b"] > served_by_b_before  # traffic moved to b
            restarted = start_upstream("a", port=a.port, log_dir=session_logs)
            try:
                await asyncio.to_thread(
                    wait_until, lambda: _endpoint_healthy(gateway, a.port), 10, message="re-admission of a"
                )
                before = load.names["a"]
                await asyncio.sleep(0.5)
                assert load.names["a"] > before  # a takes traffic again
            finally:
                restarted.stop()
        assert load.total > 200
        assert load.failures == 0, (load.statuses, load.errors[:5])
    finally:
        gateway.stop()


async def test_reload_under_load_loses_no_request_and_bad_reload_keeps_old_config(
    tmp_path: Path, two_upstreams: tuple[Process, Process], session_logs: Path
) -> None:
    a, b = two_upstreams
    config = gateway_config([f"127.0.0.1:{a.port}"])
    path = tmp_path / "gw.yaml"
    _write(path, config)
    gateway = start_gateway(
        path, config["listen"]["port"], config["admin"]["port"], session_logs, ("--no-watch",)
    )
    try:
        async with Load(f"{gateway.url}/echo") as load:
            await asyncio.sleep(0.3)
            config["clusters"]["up"]["endpoints"] = [f"127.0.0.1:{b.port}"]
            _write(path, config)
            assert _admin_json(gateway, "/admin/reload", "POST") == {"reloaded": True}
            before = load.names["b"]
            await asyncio.sleep(0.3)
            assert load.names["b"] > before
            gateway.proc.send_signal(signal.SIGHUP)  # the same file again, by signal
            await asyncio.sleep(0.3)
            broken = dict(
                config, routes=[{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "nope"}}]
            )
            _write(path, broken)
            request = urllib.request.Request(
                gateway.admin_url + "/admin/reload",
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 400
            errors = json.loads(refused.value.read())["errors"]
            assert any("gw.yaml:" in e and "nope" in e for e in errors)
            before = load.names["b"]
            await asyncio.sleep(0.3)
            assert load.names["b"] > before  # still serving with the old config
        assert load.total > 100
        assert load.failures == 0, (load.statuses, load.errors[:5])
    finally:
        gateway.stop()


async def test_sigterm_drains_in_flight_requests(
    tmp_path: Path, upstream_a: Process, session_logs: Path
) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    path = tmp_path / "gw.yaml"
    _write(path, config)
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    async with aiohttp.ClientSession() as session:

        async def slow() -> int:
            async with session.get(f"{gateway.url}/slow?ms=700") as response:
                await response.read()
                return response.status

        in_flight = [asyncio.create_task(slow()) for _ in range(5)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        assert await asyncio.gather(*in_flight) == [200] * 5
        code = await asyncio.to_thread(gateway.proc.wait, 10)
        assert code == 0
        assert time.monotonic() - started < 5
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(f"{gateway.url}/echo") as response:
                await response.read()


async def test_a_changed_config_file_is_reloaded(
    tmp_path: Path, two_upstreams: tuple[Process, Process], session_logs: Path
) -> None:
    a, b = two_upstreams
    config = gateway_config([f"127.0.0.1:{a.port}"])
    path = tmp_path / "gw.yaml"
    _write(path, config)
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    try:
        async with aiohttp.ClientSession() as session:

            async def served_by() -> str:
                async with session.get(f"{gateway.url}/echo") as response:
                    return str((await response.json())["name"])

            assert await served_by() == "a"
            config["clusters"]["up"]["endpoints"] = [f"127.0.0.1:{b.port}"]
            _write(path, config)
            deadline = time.monotonic() + 10
            while await served_by() != "b":
                assert time.monotonic() < deadline, "the file change was not picked up"
                await asyncio.sleep(0.05)
    finally:
        gateway.stop()


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def test_a_reload_keeps_the_state_of_unchanged_filter_chains_and_rebuilds_the_rest(
    tmp_path: Path, upstream_a: Process, session_logs: Path
) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    limited = {"limits": [{"key": "client_ip", "rate": "3/min"}], "backend": "memory"}
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump([{"sha256": _sha256("old-key"), "principal": "p"}]))
    config["routes"] = [
        {"name": "limited", "match": {"prefix": "/limited/"}, "rewrite": {"prefix": "/"},
         "backend": {"cluster": "up"}, "filters": [{"rate_limit": limited}]},
        {"name": "keyed", "match": {"prefix": "/keyed/"}, "rewrite": {"prefix": "/"},
         "backend": {"cluster": "up"}, "filters": [{"auth_apikey": {"keys_file": "keys.yaml"}}]},
        {"name": "other", "match": {"prefix": "/"}, "backend": {"cluster": "up"}},
    ]  # fmt: skip
    path = tmp_path / "gw.yaml"
    _write(path, config)
    gateway = start_gateway(
        path, config["listen"]["port"], config["admin"]["port"], session_logs, ("--no-watch",)
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def status(target: str, headers: dict[str, str] | None = None) -> int:
                async with session.get(f"{gateway.url}{target}", headers=headers or {}) as response:
                    await response.read()
                    return response.status

            assert [await status("/limited/echo") for _ in range(4)] == [200, 200, 200, 429]
            # Another route changes; the limited route's chain is kept, bucket included.
            config["routes"][2]["request_headers"] = {"add": {"x-changed": "yes"}}
            keys_file.write_text(yaml.safe_dump([{"sha256": _sha256("new-key"), "principal": "p"}]))
            _write(path, config)
            assert _admin_json(gateway, "/admin/reload", "POST") == {"reloaded": True}
            assert await status("/limited/echo") == 429
            # A chain that reads a file when built is rebuilt at every reload: the rotated key works.
            assert await status("/keyed/echo", {"x-api-key": "new-key"}) == 200
            assert await status("/keyed/echo", {"x-api-key": "old-key"}) == 401
            # The limited route's own options change: its chain is rebuilt, with fresh buckets.
            limited["limits"][0]["rate"] = "4/min"
            _write(path, config)
            assert _admin_json(gateway, "/admin/reload", "POST") == {"reloaded": True}
            assert await status("/limited/echo") == 200
    finally:
        gateway.stop()

"""The pool as a real process: start, announce, register, restart a killed worker, stop cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.inference_workers.support import ROOT, child_env, free_port

# Deadlines for the pool's steps on a busy 2-core machine; the steps take a second or two each.
STEP_TIMEOUT_S = 60.0


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free (the pool gives replica i port base + i)."""
    for _ in range(100):
        base = free_port()
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", base))
                second.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two consecutive free ports")


class AdminRecorder:
    """A stand-in for the gateway's admin API that records endpoint registrations."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def add(self, request: web.Request) -> web.Response:
        self.calls.append(("POST", (await request.json())["address"]))
        return web.json_response({}, status=201)

    async def remove(self, request: web.Request) -> web.Response:
        self.calls.append(("DELETE", request.match_info["address"]))
        return web.json_response({})


@pytest.fixture
async def admin() -> AsyncIterator[tuple[AdminRecorder, str]]:
    recorder = AdminRecorder()
    app = web.Application()
    app.router.add_post("/admin/clusters/risk/endpoints", recorder.add)
    app.router.add_delete("/admin/clusters/risk/endpoints/{address}", recorder.remove)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield recorder, f"http://127.0.0.1:{port}/admin/clusters/risk/endpoints"
    await runner.cleanup()


async def eventually(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def read_announce(path: Path) -> list[dict[str, Any]]:
    try:
        endpoints: list[dict[str, Any]] = orjson.loads(path.read_bytes())["endpoints"]
    except (OSError, orjson.JSONDecodeError):
        return []
    return endpoints


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_pool_restarts_a_killed_worker_and_stops_cleanly(
    demo_repository: Path, tmp_path: Path, admin: tuple[AdminRecorder, str]
) -> None:
    recorder, register_url = admin
    announce = tmp_path / "announce.json"
    base, grpc_base = free_port_pair(), free_port_pair()
    addresses = [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
    pool = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "inference_workers",
        "workers",
        "--model-repository",
        str(demo_repository),
        "--models",
        "diabetes",
        "--replicas",
        "2",
        "--device",
        "cpu",
        "--base-port",
        str(base),
        "--grpc-base-port",
        str(grpc_base),
        "--announce",
        str(announce),
        "--register-url",
        register_url,
        "--restart-backoff",
        "0.1",
        "--shutdown-grace",
        "5",
        cwd=ROOT,
        env=child_env(),
    )
    try:
        endpoints = await eventually(
            lambda: (
                (found := read_announce(announce))
                and all(e["ready"] for e in found)
                and len(found) == 2
                and found
            ),
            "both workers ready",
        )
        assert [endpoint["address"] for endpoint in endpoints] == addresses
        assert [endpoint["grpc"] for endpoint in endpoints] == [
            f"127.0.0.1:{grpc_base}",
            f"127.0.0.1:{grpc_base + 1}",
        ]
        await eventually(
            lambda: sorted(recorder.calls) == sorted(("POST", a) for a in addresses), "registrations"
        )
        first_pid = endpoints[0]["pid"]

        os.kill(first_pid, signal.SIGKILL)
        restarted = await eventually(
            lambda: [
                e
                for e in read_announce(announce)
                if e["address"] == addresses[0] and e["pid"] != first_pid and e["ready"]
            ],
            "the killed worker to be restarted",
        )
        await eventually(lambda: recorder.calls.count(("POST", addresses[0])) == 2, "re-registration")
        assert ("DELETE", addresses[0]) in recorder.calls
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://{addresses[0]}/v2/models/diabetes/infer",
                json={
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [0.0] * 10}]
                },
            ) as response,
        ):
            assert response.status == 200
        worker_pids = [restarted[0]["pid"], endpoints[1]["pid"]]

        pool.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(pool.wait(), STEP_TIMEOUT_S) == 0
        assert not any(alive(pid) for pid in worker_pids), "workers must not outlive the pool"
        assert read_announce(announce) == []
        assert recorder.calls[-2:] in (
            [("DELETE", addresses[0]), ("DELETE", addresses[1])],
            [("DELETE", addresses[1]), ("DELETE", addresses[0])],
        )
    finally:
        if pool.returncode is None:
            pool.kill()
            await pool.wait()

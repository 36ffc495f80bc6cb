"""The gateway in front of real worker processes: a pool that loses a worker, and least_queue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml

from tests.inference_workers.support import (
    START_TIMEOUT_S,
    WorkerProcess,
    child_env,
    free_port,
    free_port_run,
    start_worker,
    wait_for,
)
from tests.support.processes import ROOT, GatewayProcess, start_gateway

# A pool worker restarts after its backoff and model load: generous on a busy 2-core machine.
RESTART_TIMEOUT_S = 30.0


def _announced(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text())["endpoints"])
    except (OSError, ValueError, KeyError):
        return []


@pytest.fixture
def pool(model_repository: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    announce = tmp_path / "pool.json"
    base = free_port_run(2)
    log = open(tmp_path / "pool.log", "wb")  # noqa: SIM115 (the child writes to it)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "workers",
            "--model-repository",
            str(model_repository),
            "--replicas",
            "2",
            "--base-port",
            str(base),
            "--models",
            "risk",
            "--announce",
            str(announce),
            "--restart-backoff",
            "0.2",
        ],
        cwd=ROOT,
        env=child_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_for(
            lambda: proc.poll() is not None or len([e for e in _announced(announce) if e["ready"]]) == 2,
            START_TIMEOUT_S,
            "two ready workers",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"the pool exited with {proc.returncode}")
        yield proc, announce
    except BaseException:
        print((tmp_path / "pool.log").read_text(errors="replace")[-4000:])  # shown with the failure
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _risk_request(rows: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ]
    }


async def test_a_killed_worker_is_restarted_ejected_and_readmitted_without_failed_requests(
    pool: tuple[subprocess.Popen[bytes], Path], tmp_path: Path, breast_cancer_rows: np.ndarray
) -> None:
    _, announce = pool
    port, admin = free_port(), free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin},
        "access_log": {"enabled": False},
        "clusters": {
            "risk": {
                "protocol": "oip_v2",
                "discovery": {"type": "pool", "file": str(announce), "poll_interval": "100ms"},
                "balancer": "least_queue",
                "health": {"path": "/v2/health/ready", "interval": "200ms", "timeout": "500ms"},
                "outlier": {"consecutive_failures": 2, "base_ejection_time": "500ms"},
                "retry": {
                    "attempts": 2,
                    "on": ["connect_failure", "reset", "503"],
                    "backoff_base": "1ms",
                    "budget_percent": 100,
                },
            }
        },
        "routes": [{"name": "risk", "match": {"model": "risk"}, "backend": {"cluster": "risk"}}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, port, admin, tmp_path)
    statuses: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession, offset: int) -> None:
        i = offset
        while not stop.is_set():
            rows = breast_cancer_rows[i % len(breast_cancer_rows)][None, :]
            async with session.post(f"{gateway.url}/v2/models/risk/infer", json=_risk_request(rows)) as r:
                await r.read()
                statuses[r.status] += 1
            i += 7

    try:
        async with aiohttp.ClientSession() as session:
            clients = [asyncio.create_task(client(session, k)) for k in range(6)]
            await asyncio.sleep(0.5)
            victim = _announced(announce)[0]
            os.kill(victim["pid"], signal.SIGKILL)
            # The pool restarts it (a new pid on the same address) and the gateway takes it back.
            await asyncio.to_thread(
                wait_for,
                lambda: any(
                    e["address"] == victim["address"] and e["ready"] and e["pid"] != victim["pid"]
                    for e in _announced(announce)
                ),
                RESTART_TIMEOUT_S,
                "the restarted worker",
            )
            await asyncio.to_thread(
                wait_for, lambda: _healthy(gateway, victim["address"]), 10, "re-admission"
            )
            before = _served(gateway, victim["address"])
            await asyncio.sleep(0.5)
            by_worker[victim["address"]] = _served(gateway, victim["address"]) - before
            stop.set()
            await asyncio.gather(*clients)
    finally:
        gateway.stop()
    assert sum(statuses.values()) > 100
    assert set(statuses) == {200}, statuses
    assert by_worker[victim["address"]] > 0  # the restarted worker serves again


def _clusters(gateway: GatewayProcess) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"{gateway.admin_url}/admin/clusters", timeout=5) as response:
        return dict(json.loads(response.read()))


def _endpoint(gateway: GatewayProcess, address: str) -> dict[str, Any] | None:
    for cluster in _clusters(gateway).values():
        for endpoint in cluster["endpoints"]:
            if endpoint["address"] == address:
                return dict(endpoint)
    return None


def _healthy(gateway: GatewayProcess, address: str) -> bool:
    endpoint = _endpoint(gateway, address)
    return endpoint is not None and bool(endpoint["healthy"]) and not endpoint["ejected"]


def _served(gateway: GatewayProcess, address: str) -> int:
    endpoint = _endpoint(gateway, address)
    return int(endpoint["total_requests"]) if endpoint else 0


@pytest.fixture
def two_slow_workers(model_repository: Path, tmp_path: Path) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    a = start_worker(model_repository, tmp_path, "--models", "slow")
    b = start_worker(model_repository, tmp_path, "--models", "slow")
    yield a, b
    a.stop()
    b.stop()


async def test_least_queue_prefers_the_idle_worker(
    two_slow_workers: tuple[WorkerProcess, WorkerProcess], tmp_path: Path
) -> None:
    busy, idle = two_slow_workers
    port, admin = free_port(), free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin},
        "access_log": {"enabled": False},
        "clusters": {
            "slow": {
                "protocol": "oip_v2",
                "balancer": "least_queue",
                "endpoints": [busy.url.removeprefix("http://"), idle.url.removeprefix("http://")],
            }
        },
        "routes": [{"name": "slow", "match": {"model": "slow"}, "backend": {"cluster": "slow"}}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, port, admin, tmp_path)

    def infer_body(seconds: float) -> dict[str, Any]:
        return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [seconds, 1.0]}]}

    try:
        async with aiohttp.ClientSession() as session:
            # Both workers report an empty queue once.
            for _ in range(6):
                async with session.post(f"{gateway.url}/v2/models/slow/infer", json=infer_body(0)) as r:
                    assert r.status == 200
            # Another client saturates one worker directly (one model instance: requests queue up).
            saturating = [
                asyncio.create_task(session.post(f"{busy.url}/v2/models/slow/infer", json=infer_body(0.8)))
                for _ in range(3)
            ]
            await asyncio.sleep(0.1)
            before_busy = _served(gateway, busy.url.removeprefix("http://"))
            gate = asyncio.Semaphore(4)  # four clients of the gateway at a time

            async def one() -> None:
                async with gate, session.post(f"{gateway.url}/v2/models/slow/infer", json=infer_body(0)) as r:
                    assert r.status == 200

            await asyncio.gather(*(one() for _ in range(40)))
            sent_to_busy = _served(gateway, busy.url.removeprefix("http://")) - before_busy
            for task in saturating:
                (await task).release()
    finally:
        gateway.stop()
    # A request that lands on the saturated worker stays in flight there, which steers the others
    # away: of 40 requests, only the first pick or two can go to it.
    assert sent_to_busy <= 3

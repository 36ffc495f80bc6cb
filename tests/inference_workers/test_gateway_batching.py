"""Batching at the gateway in front of a real worker: answers equal unbatched ones, batches form."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml

from tests.inference_workers.support import WorkerProcess, free_port, start_worker
from tests.support.processes import GatewayProcess, start_gateway


@pytest.fixture
def risk_worker(model_repository: Path, tmp_path: Path) -> Iterator[WorkerProcess]:
    worker = start_worker(model_repository, tmp_path, "--models", "risk")
    yield worker
    worker.stop()


def _batching_gateway(
    worker: WorkerProcess, tmp_path: Path, route: dict[str, Any], batching: dict[str, Any]
) -> GatewayProcess:
    """A gateway process whose one route batches requests to `worker`."""
    port, admin = free_port(), free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin},
        "access_log": {"enabled": False},
        "clusters": {"risk": {"protocol": "oip_v2", "endpoints": [worker.url.removeprefix("http://")]}},
        "routes": [{**route, "backend": {"cluster": "risk"}, "filters": [{"batching": batching}]}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return start_gateway(path, port, admin, tmp_path)


def _metric_mean(text: str, name: str) -> float:
    total = sum(float(v) for v in re.findall(rf"^{name}_sum\{{[^}}]*\}} (\S+)$", text, re.M))
    count = sum(float(v) for v in re.findall(rf"^{name}_count\{{[^}}]*\}} (\S+)$", text, re.M))
    return total / count if count else 0.0


async def test_concurrent_requests_are_batched_and_answered_exactly(
    risk_worker: WorkerProcess, tmp_path: Path, breast_cancer_rows: np.ndarray
) -> None:
    gateway = _batching_gateway(
        risk_worker,
        tmp_path,
        {"name": "risk", "match": {"model": "risk"}},
        {"max_batch_size": 32, "max_queue_delay": "5ms"},
    )

    def body(row: np.ndarray) -> dict[str, Any]:
        return {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": row.tolist()}]}

    async def infer(session: aiohttp.ClientSession, base: str, row: np.ndarray) -> dict[str, Any]:
        async with session.post(f"{base}/v2/models/risk/versions/2/infer", json=body(row)) as response:
            assert response.status == 200, await response.text()
            return {o["name"]: o["data"] for o in (await response.json())["outputs"]}

    try:
        rows = breast_cancer_rows[:64]
        async with aiohttp.ClientSession() as session:
            batched = await asyncio.gather(*(infer(session, gateway.url, row) for row in rows))
            alone = [await infer(session, risk_worker.url, row) for row in rows]
            async with session.get(f"{gateway.admin_url}/metrics") as response:
                metrics = await response.text()
    finally:
        gateway.stop()
    for got, expected in zip(batched, alone, strict=True):
        assert got["label"] == expected["label"]
        np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-5, atol=1e-6)
    assert _metric_mean(metrics, "turnout_batch_size") > 4


async def test_batches_follow_the_route_rewrite(risk_worker: WorkerProcess, tmp_path: Path) -> None:
    gateway = _batching_gateway(
        risk_worker,
        tmp_path,
        {"name": "batched", "match": {"prefix": "/batched/"}, "rewrite": {"prefix": "/"}},
        {"max_batch_size": 8, "max_queue_delay": "2ms"},
    )
    row = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [1.0] * 30}]}
    try:
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.post(f"{gateway.url}/batched/v2/models/risk/infer", json=row) as r:
                    return r.status

            assert await asyncio.gather(*(one() for _ in range(8))) == [200] * 8
    finally:
        gateway.stop()


async def test_a_malformed_request_is_refused_before_it_joins_a_batch(
    risk_worker: WorkerProcess, tmp_path: Path
) -> None:
    gateway = _batching_gateway(
        risk_worker,
        tmp_path,
        {"name": "risk", "match": {"model": "risk"}},
        {"max_batch_size": 32, "max_queue_delay": "5ms"},
    )
    try:
        async with aiohttp.ClientSession() as session:
            bad = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [1.0] * 29}]}
            async with session.post(f"{gateway.url}/v2/models/risk/infer", json=bad) as response:
                assert response.status == 400
                assert "features" in (await response.json())["error"]
    finally:
        gateway.stop()


async def test_a_batched_route_is_mirrored_to_its_shadow(risk_worker: WorkerProcess, tmp_path: Path) -> None:
    """Batching and shadowing together: each request is answered from its batch, and a copy of it
    goes alone to the mirror, whose answers the shadow comparison finds identical (same worker)."""
    port, admin = free_port(), free_port()
    worker = risk_worker.url.removeprefix("http://")
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin},
        "access_log": {"enabled": False},
        "state": {"sqlite_path": str(tmp_path / "events.db")},
        "clusters": {
            "primary": {"protocol": "oip_v2", "endpoints": [worker]},
            "copy": {"protocol": "oip_v2", "endpoints": [worker]},
        },
        "experiments": {
            "mirror": {
                "kind": "shadow",
                "primary": {"cluster": "primary"},
                "mirrors": [{"cluster": "copy", "fraction": 1.0}],
            }
        },
        "routes": [
            {
                "name": "risk",
                "match": {"model": "risk"},
                "backend": {"experiment": "mirror"},
                "filters": [{"batching": {"max_batch_size": 16, "max_queue_delay": "5ms"}}],
            }
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, port, admin, tmp_path)
    row = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.5] * 30}]}
    try:
        async with aiohttp.ClientSession() as session:

            async def one(index: int) -> int:
                url = f"{gateway.url}/v2/models/risk/versions/2/infer"
                async with session.post(url, json=row, headers={"x-user-id": f"u{index}"}) as response:
                    await response.read()
                    return response.status

            assert await asyncio.gather(*(one(i) for i in range(24))) == [200] * 24
            async with session.get(f"{gateway.admin_url}/metrics") as response:
                metrics = await response.text()
            deadline = asyncio.get_running_loop().time() + 10
            tally: dict[str, Any] = {"compared": 0}
            while True:
                async with session.get(f"{gateway.admin_url}/admin/experiments/mirror") as response:
                    # The mirror appears in the status once its first comparison is recorded.
                    mirrors = (await response.json())["shadow"]["mirrors"]
                tally = next(iter(mirrors.values()), tally)
                if tally["compared"] >= 24 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
    finally:
        gateway.stop()
    assert _metric_mean(metrics, "turnout_batch_size") > 1, "the primary requests were batched"
    assert tally["compared"] == 24 and tally["status_mismatches"] == 0
    assert tally["disagreements"] == 0 and tally["mirror_errors"] == 0
    assert tally["classifier"] == {"rows": 48, "agreement_rate": 1.0}  # label and probabilities' argmax
    assert tally["numeric"]["max_abs_diff"] == 0.0

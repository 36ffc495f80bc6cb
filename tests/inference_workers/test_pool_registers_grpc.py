"""A pool that registers its workers with a gateway's admin API sends each worker's gRPC port, so
the gateway relays gRPC calls to the worker there as it sends REST requests to its address."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
import pytest

from inference_workers.grpc_codec import pb, pb_grpc
from tests.conftest import gateway_config
from tests.inference_workers.support import START_TIMEOUT_S, child_env, free_port, free_port_run
from tests.support.processes import ROOT


@pytest.fixture
def ports() -> tuple[int, int]:
    """The worker's HTTP and gRPC ports."""
    return free_port_run(1), free_port_run(1)


def _start_pool(
    repository: Path, ports: tuple[int, int], register_url: str, log: Path
) -> subprocess.Popen[bytes]:
    http_port, grpc_port = ports
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "inference_workers",
                "workers",
                "--model-repository",
                str(repository),
                "--models",
                "diabetes",
                "--replicas",
                "1",
                "--device",
                "cpu",
                "--base-port",
                str(http_port),
                "--grpc-base-port",
                str(grpc_port),
                "--register-url",
                register_url,
                "--shutdown-grace",
                "5",
            ],
            cwd=ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def stop_later() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _request() -> Any:
    message = pb.ModelInferRequest(model_name="diabetes")
    message.inputs.add(name="features", datatype="FP32", shape=[2, 10])
    message.raw_input_contents.append(np.linspace(-0.05, 0.05, 20, dtype=np.float32).tobytes())
    return message


async def _infer(address: str) -> bytes:
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_request(), timeout=10)
    return bytes(answer.raw_output_contents[0])


async def _endpoints(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(url) as response:
        clusters = await response.json()
    return list(clusters["up"]["endpoints"])


async def test_a_registered_worker_serves_grpc_through_the_gateway(
    make_gateway: Any,
    demo_repository: Path,
    tmp_path: Path,
    ports: tuple[int, int],
    stop_later: list[subprocess.Popen[bytes]],
) -> None:
    http_port, grpc_port = ports
    address = f"127.0.0.1:{http_port}"
    route = {"name": "diabetes", "match": {"model": "diabetes"}, "backend": {"cluster": "up"}}
    # The config must name one endpoint: nothing listens there, and it is drained once the worker is in.
    placeholder = f"127.0.0.1:{free_port()}"
    config = gateway_config([placeholder], routes=[route])
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}/admin"
        pool = _start_pool(demo_repository, ports, f"{admin}/clusters/up/endpoints", tmp_path / "pool.log")
        stop_later.append(pool)
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while not any(e["address"] == address for e in await _endpoints(session, f"{admin}/clusters")):
            assert pool.poll() is None, (tmp_path / "pool.log").read_text(errors="replace")[-4000:]
            assert asyncio.get_running_loop().time() < deadline, "the worker was never registered"
            await asyncio.sleep(0.1)
        assert gw._registered["up"][address] == (1, grpc_port), "registered with its gRPC port"
        async with session.post(f"{admin}/clusters/up/endpoints/{placeholder}/drain", json={}) as drained:
            assert drained.status == 200

        # Through the gateway, over gRPC: the worker's own answer, from its gRPC port.
        direct = await _infer(f"127.0.0.1:{grpc_port}")
        assert await _infer(f"127.0.0.1:{gw.data_port}") == direct

        # The pool withdraws its worker on SIGTERM.
        pool.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(pool.wait, 30) == 0
        addresses = [e["address"] for e in await _endpoints(session, f"{admin}/clusters")]
        assert addresses == [placeholder]

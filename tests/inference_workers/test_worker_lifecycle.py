"""Worker process lifecycle: SIGTERM drains requests in flight, a dead parent stops the worker, and
an unusable --device is refused at start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
import pytest

from gateway.core.protocols.oip_v2 import InferRequest, Tensor, decode_response, encode_request
from inference_workers.cli import pool_main, worker_main
from inference_workers.device import visible_gpus
from inference_workers.grpc_codec import pb_grpc, request_to_proto, response_from_proto
from tests.inference_workers.support import ROOT, child_env, free_port, http_status, start_worker, wait_for


def slow_request(seconds: float) -> InferRequest:
    return InferRequest([Tensor("x", "FP32", np.array([[seconds, 2.0]], dtype=np.float32))])


async def test_sigterm_lets_requests_in_flight_finish(model_repository: Path, tmp_path: Path) -> None:
    worker = start_worker(model_repository, tmp_path)
    try:
        async with (
            aiohttp.ClientSession() as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as channel,
        ):
            body = encode_request(slow_request(0.4)).body
            rest_call = asyncio.create_task(http.post(f"{worker.url}/v2/models/slow/infer", data=body))
            grpc_call = asyncio.ensure_future(
                pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                    request_to_proto("slow", "1", slow_request(0.4))
                )
            )

            async def both_admitted() -> bool:
                async with http.get(f"{worker.url}/metrics") as response:
                    text = await response.text()
                return 'turnout_worker_queue_depth{model="slow",version="1"} 1.0' in text

            for _ in range(500):  # up to ten seconds
                if await both_admitted():
                    break
                await asyncio.sleep(0.02)
            else:
                raise TimeoutError("the two slow requests were never both admitted")
            worker.process.send_signal(signal.SIGTERM)
            response = await rest_call
            assert response.status == 200
            (total,) = decode_response(await response.read()).outputs
            np.testing.assert_array_equal(total.data, np.array([2.4], dtype=np.float32))
            (grpc_total,) = response_from_proto(await grpc_call).outputs
            np.testing.assert_array_equal(grpc_total.data, np.array([2.4], dtype=np.float32))
            response.release()
        assert await asyncio.to_thread(worker.process.wait, 30) == 0
        assert "worker stopped" in worker.log()
    finally:
        worker.stop(signal.SIGKILL)


def test_worker_exits_when_its_parent_dies(model_repository: Path, tmp_path: Path) -> None:
    port = free_port()
    pid_file = tmp_path / "worker.pid"
    parent_script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-m', 'inference_workers.worker', '--model-repository', "
        f"{str(model_repository)!r}, '--http-port', '{port}', '--device', 'cpu', '--models', 'diabetes', "
        "'--exit-with-parent'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_script], cwd=ROOT, env=child_env())
    try:
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/v2/health/ready") == 200, 60, "worker ready")
        worker_pid = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        wait_for(lambda: not _alive(worker_pid), 10, "the orphaned worker to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An exited child of a dead parent is reaped by init; until then it is a zombie, which is gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(bool(visible_gpus()), reason="this host has a GPU, so --device cuda is valid")
def test_device_cuda_without_a_gpu_fails_at_start(tmp_path: Path, capsys: Any) -> None:
    status = worker_main(["--model-repository", str(tmp_path), "--http-port", "0", "--device", "cuda"])
    assert status == 2
    assert "--device cuda: no CUDA GPU is visible on this host" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--device", "tpu"], "--device 'tpu': use auto, cpu, cuda or cuda:N"),
        (["--models", "risk:one"], "--models: version 'one' of 'risk' is not a number"),
    ],
)
def test_bad_arguments_fail_at_start(tmp_path: Path, capsys: Any, arguments: list[str], message: str) -> None:
    assert worker_main(["--model-repository", str(tmp_path), "--http-port", "0", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_missing_repository_fails_at_start(tmp_path: Path, capsys: Any) -> None:
    assert (
        worker_main(["--model-repository", str(tmp_path / "nope"), "--http-port", "0", "--device", "cpu"])
        == 2
    )
    assert "nope is not a directory" in capsys.readouterr().err


def test_argument_types_are_checked_by_the_parser(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as caught:
        worker_main(["--model-repository", str(tmp_path), "--http-port", "0", "--max-loaded-models", "0"])
    assert caught.value.code == 2
    assert "--max-loaded-models: must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(bool(visible_gpus()), reason="this host has a GPU, so --device cuda is valid")
def test_pool_refuses_an_unusable_device_before_starting_workers(tmp_path: Path, capsys: Any) -> None:
    assert pool_main(["--model-repository", str(tmp_path), "--device", "cuda"]) == 2
    assert "turnout workers: --device cuda: no CUDA GPU is visible" in capsys.readouterr().err

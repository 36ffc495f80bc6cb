"""Real model servers on loopback for the interop tests: MLServer and KServe, each run by the
interpreter of its own venv (`server_venvs.py`), serving a tiny scikit-learn model trained here, and
TorchServe serving the handler of `torchserve_doubler.py` (see `start_torchserve`).

The model is trained by the server's own interpreter so that the pickled estimator matches the
scikit-learn version that loads it. It is a logistic regression on two features whose class is
the second feature: [[0, 0], [1, 1]] predicts [0, 1].
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.support.processes import Process, free_port, http_ok, wait_until

HERE = Path(__file__).resolve().parent
# MLServer imports its runtimes and starts three servers; 60 s covers a loaded 2-core machine.
SERVER_START_S = 60.0

_TRAIN = """
import sys, joblib, numpy as np
from sklearn.linear_model import LogisticRegression
features = np.array([[0, 0], [1, 1], [0, 1], [1, 0], [0.2, 0.9], [0.9, 0.1]])
classes = np.array([0, 1, 1, 0, 1, 0])
joblib.dump(LogisticRegression(C=100.0).fit(features, classes), sys.argv[1])
"""


@dataclass
class ModelServer:
    process: Process
    model: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.process.port}"

    def infer_directly(self, body: bytes) -> dict[str, Any]:
        """The server's own answer to an OIP v2 JSON body for the model `bc`, with no gateway between."""
        request = urllib.request.Request(
            f"{self.url}/v2/models/bc/infer", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            document: dict[str, Any] = orjson.loads(answer.read())
        return document


def train(python: Path, path: Path) -> Path:
    subprocess.run([str(python), "-c", _TRAIN, str(path)], check=True, timeout=120)
    return path


def _wait_ready(process: Process, url: str, name: str) -> None:
    try:
        wait_until(
            lambda: process.proc.poll() is None and http_ok(url), SERVER_START_S, 0.2, f"{name} to be ready"
        )
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"{name} did not start:\n{process.log()}") from None


def start_mlserver(python: Path, workdir: Path, model: str) -> ModelServer:
    """MLServer 1.7 with its scikit-learn runtime; the model declares no signature (`inputs: []`)."""
    model_dir = workdir / model
    model_dir.mkdir(parents=True)
    train(python, model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": model,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            }
        )
    )
    port = free_port()
    (workdir / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,  # one process: a few seconds to start, nothing left behind
                "host": "127.0.0.1",
            }
        )
    )
    log_path = workdir / "mlserver.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [str(python.parent / "mlserver"), "start", str(workdir)],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process = Process(proc, port, log_path)
    _wait_ready(process, f"http://127.0.0.1:{port}/v2/models/{model}/ready", "MLServer")
    return ModelServer(process, model)


def start_kserve(python: Path, workdir: Path, model: str) -> ModelServer:
    """KServe's Python model server with the model of `kserve_sklearn.py`."""
    workdir.mkdir(parents=True, exist_ok=True)
    model_file = train(python, workdir / "model.joblib")
    port = free_port()
    log_path = workdir / "kserve.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [str(python), str(HERE / "kserve_sklearn.py"), str(model_file), model, str(port)],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process = Process(proc, port, log_path)
    _wait_ready(process, f"http://127.0.0.1:{port}/v2/models/{model}/ready", "KServe")
    return ModelServer(process, model)


# TorchServe's Python worker imports `torch` for one thing: to tell whether a handler's result is a
# `torch.Tensor` before it serialises it (`ts/protocol/otf_message_handler.py`). The doubler's
# handler imports no torch and returns lists, so the worker gets this module in its place: PyTorch's
# Linux wheels from PyPI pull the CUDA libraries, 3.0 GB to download and 5.4 GB installed.
_TORCH_SHIM = '''"""Stands in for PyTorch in TorchServe's worker: no handler here returns a tensor."""


class Tensor:
    pass
'''
# TorchServe starts a JVM, then its Python worker; 90 s covers a loaded 2-core machine.
TORCHSERVE_START_S = 90.0


@dataclass
class GroupProcess(Process):
    """A process that leads a process group: TorchServe's CLI, its JVM and the JVM's workers."""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        group = self.proc.pid
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        # The CLI exits at once; the JVM stops its workers first. Wait for the whole group.
        while time.monotonic() < deadline and _group_alive(group):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.proc.wait()
        return self.proc.returncode


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class TorchServe:
    process: GroupProcess
    calls_file: Path

    @property
    def port(self) -> int:
        return self.process.port

    def calls(self) -> int:
        """How many times the doubler's handler has run."""
        return len(self.calls_file.read_text().splitlines()) if self.calls_file.exists() else 0


def start_torchserve(python: Path, workdir: Path, envelope: str | None = None) -> TorchServe:
    """TorchServe 0.12 (its Java frontend and Python worker) serving the model `doubler` of
    `torchserve_doubler.py`, with TorchServe's `service_envelope` set to `envelope` if given."""
    if shutil.which("java") is None:
        reason = "TorchServe needs Java 17 (`apt-get install openjdk-17-jre-headless`)"
        if os.environ.get("TURNOUT_REQUIRE_SERVERS"):
            raise RuntimeError(reason)
        import pytest

        pytest.skip(reason)
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "store"
    store.mkdir()
    subprocess.run(
        [
            str(python.parent / "torch-model-archiver"),
            "--model-name=doubler",
            "--version=1.0",
            f"--handler={HERE / 'torchserve_doubler.py'}",
            f"--export-path={store}",
            "--archive-format=no-archive",
        ],
        check=True,
        timeout=60,
        cwd=workdir,
    )
    shim = workdir / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(_TORCH_SHIM)
    port = free_port()
    properties = [
        f"inference_address=http://127.0.0.1:{port}",
        f"management_address=http://127.0.0.1:{free_port()}",
        f"metrics_address=http://127.0.0.1:{free_port()}",
        # Its gRPC APIs listen too, by default on 7070 and 7071, which a second server cannot.
        f"grpc_inference_port={free_port()}",
        f"grpc_management_port={free_port()}",
        # Host metrics are gathered by a Python script run every minute: CPU the tests need.
        "disable_system_metrics=true",
        f"model_store={store}",
        "load_models=doubler",
        "default_workers_per_model=1",
        "disable_token_authorization=true",
        # The worker's socket is named by this number; a free port keeps concurrent servers apart.
        f"initial_worker_port={free_port()}",
    ]
    if envelope:
        properties.append(f"service_envelope={envelope}")
    (workdir / "config.properties").write_text("\n".join(properties) + "\n")
    calls_file = workdir / "calls"
    env = {
        **os.environ,
        "PYTHONPATH": str(shim.parent),
        # TorchServe keeps its pid file in the temporary folder and refuses to start a second
        # server beside a running one: each server gets a folder of its own.
        "TMPDIR": str(workdir),
        "TEMP": str(workdir),
        "LOG_LOCATION": str(workdir / "logs"),
        "METRICS_LOCATION": str(workdir / "logs"),
        "DOUBLER_CALLS_FILE": str(calls_file),
    }
    log_path = workdir / "torchserve.log"
    argv = [
        str(python.parent / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        f"--ts-config={workdir / 'config.properties'}",
        f"--model-store={store}",
    ]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    process = GroupProcess(proc, port, log_path)
    # /ping answers before the worker is up; the management API says when the model is READY.
    management = properties[1].split("=", 1)[1]
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: process.proc.poll() is not None or _model_ready(f"{management}/models/doubler"),
            TORCHSERVE_START_S,
            0.2,
            "TorchServe's model to be ready",
        )
    if process.proc.poll() is not None or not _model_ready(f"{management}/models/doubler"):
        process.stop()
        raise RuntimeError(f"TorchServe did not start:\n{process.log()}")
    return TorchServe(process, calls_file)


def _model_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            description = json.load(answer)
    except (OSError, ValueError):
        return False
    return any(worker.get("status") == "READY" for worker in description[0].get("workers", []))

"""Real model servers on loopback for the interop tests: MLServer and KServe, each run by the
interpreter of its own venv (`server_venvs.py`), serving a tiny scikit-learn model trained here.

The model is trained by the server's own interpreter so that the pickled estimator matches the
scikit-learn version that loads it. It is a logistic regression on two features whose class is
the second feature: [[0, 0], [1, 1]] predicts [0, 1].
"""

from __future__ import annotations

import json
import subprocess
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

"""`make demo`: build the demo models, start two inference workers and the gateway, print examples.

Everything runs in the foreground; Ctrl-C (or SIGTERM) stops the gateway first, then the workers,
each given time to finish what it is doing, so no process is left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
CONFIG = ROOT / "config" / "examples" / "demo.yaml"
ACCESS_LOG = ROOT / "var" / "demo-access.log"
# The monitor filter's references (demo.yaml names them): each model's training rows, one CSV each.
MONITORING = ROOT / "var" / "monitoring"
GATEWAY = "http://127.0.0.1:8080"
ADMIN = "http://127.0.0.1:9901"
# (REST port, gRPC port, models) of each demo worker; the ports are those in demo.yaml.
WORKERS = ((8001, 8011, "risk:1,risk-mlp,diabetes"), (8002, 8012, "risk:2,risk-mlp,diabetes"))
# Startup budget: model loading and the first health checks take a few seconds on a small machine.
READY_TIMEOUT_S = 60.0
# How long each process may take to stop gracefully before it is killed.
STOP_TIMEOUT_S = 15.0


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(url: str, what: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if _ok(url):
            return
        for proc in processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: a process exited early (status {proc.returncode})")
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready within {READY_TIMEOUT_S:.0f}s")


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    # Own process group, so that the terminal's Ctrl-C reaches us first and we stop children in order.
    env = dict(os.environ)
    # The access log goes to a file so that it does not bury the examples printed here.
    env.setdefault("TURNOUT_ACCESS_LOG", str(ACCESS_LOG))
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, start_new_session=True)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(processes):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in reversed(processes):
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _taken_ports() -> list[int]:
    """The demo's ports that something else already listens on."""
    ports = [8080, 9901, *(p for worker in WORKERS for p in worker[:2])]
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(port)
    return taken


class Progress:
    """One line per step, with the seconds since the demo started: a first run is never silent."""

    __slots__ = ("_started",)

    def __init__(self) -> None:
        self._started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"turnout demo [{time.monotonic() - self._started:5.1f}s]: {text}", flush=True)


def build_models(progress: Progress) -> None:
    first_run = not all((MODELS / name).is_dir() for name in ("risk", "risk-mlp", "diabetes"))
    if first_run:
        progress.say("training the demo models into models/ (first run only: about 20 seconds) ...")
    else:
        progress.say("checking the demo models (rebuilt only when their sources changed) ...")
    subprocess.run(
        [sys.executable, "-m", "inference_workers.examples.build_models", "--out", str(MODELS)],
        cwd=ROOT,
        check=True,
    )
    progress.say("models ready")


def write_references(out: Path = MONITORING) -> None:
    """The training rows of risk and diabetes, as CSV with the feature names: the monitor filter
    compares the demo's traffic with them (drift per feature at /admin/monitoring/MODEL)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_diabetes

    out.mkdir(parents=True, exist_ok=True)
    for name, dataset in (("risk", load_breast_cancer()), ("diabetes", load_diabetes())):
        header = ",".join(str(feature) for feature in dataset.feature_names)
        # As FP32, the type the models take: a value the gateway sees is then exactly a reference
        # value, never one rounded across a bin edge.
        single = dataset.data.astype(np.float32)
        rows = "\n".join(",".join(repr(float(value)) for value in row) for row in single)
        path = out / f"{name}.csv"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(f"{header}\n{rows}\n")
        temporary.replace(path)


EXAMPLES = f"""
turnout demo is ready.

  gateway   {GATEWAY}          admin {ADMIN}  (/metrics, /admin/clusters, /readyz)
  workers   127.0.0.1:8001 (risk v1, risk-mlp, diabetes)   127.0.0.1:8002 (risk v2, risk-mlp, diabetes)

An OIP v2 inference through the gateway (the first 30 breast-cancer features of one patient):

  curl -s {GATEWAY}/v2/models/risk/versions/1/infer -H 'content-type: application/json' -d '{{
    "inputs": [{{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [
      17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871,
      1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193,
      25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189]}}]}}'

The same with tritonclient (pip install 'tritonclient[http]'):

  python - <<'PY'
  import numpy as np, tritonclient.http as http
  client = http.InferenceServerClient("127.0.0.1:8080")
  features = http.InferInput("features", [1, 30], "FP32")
  features.set_data_from_numpy(np.random.default_rng(0).random((1, 30), dtype=np.float32) * 100)
  result = client.infer("risk", [features], model_version="2")
  print(result.as_numpy("probabilities"), result.as_numpy("label"))
  PY

The same over gRPC, on the same port (pip install 'tritonclient[grpc]'); without a version, risk is
the A/B test, and its arm comes back in the initial metadata (x-turnout-arm):

  python - <<'PY'
  import numpy as np, tritonclient.grpc as triton
  client = triton.InferenceServerClient("127.0.0.1:8080")
  print(client.is_server_live(), client.get_model_metadata("risk").versions)
  features = triton.InferInput("features", [1, 30], "FP32")
  features.set_data_from_numpy(np.random.default_rng(0).random((1, 30), dtype=np.float32) * 100)
  result = client.infer("risk", [features], model_version="1")
  print(result.as_numpy("probabilities"), result.as_numpy("label"))
  PY

Model metadata:   curl -s {GATEWAY}/v2/models/diabetes
Access log:       tail -f {ACCESS_LOG.relative_to(ROOT)}
Metrics:          curl -s {ADMIN}/metrics | grep turnout_requests
Endpoints:        curl -s {ADMIN}/admin/clusters
Model drift:      curl -s {ADMIN}/admin/monitoring/risk

Ctrl-C stops everything.
"""


def main() -> int:
    taken = _taken_ports()
    if taken:
        print(
            f"turnout demo: ports already in use: {', '.join(map(str, taken))} "
            "(another demo or gateway is running? stop it first)",
            file=sys.stderr,
        )
        return 1
    progress = Progress()
    build_models(progress)  # skipped in a moment when the repository is current
    write_references()
    ACCESS_LOG.parent.mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        progress.say("starting two inference workers on 127.0.0.1:8001 and :8002 (a few seconds) ...")
        for http_port, grpc_port, models in WORKERS:
            processes.append(
                _spawn(
                    [
                        "-m",
                        "gateway.cli",
                        "workers",
                        "--model-repository",
                        str(MODELS),
                        "--replicas",
                        "1",
                        "--base-port",
                        str(http_port),
                        "--grpc-base-port",
                        str(grpc_port),
                        "--models",
                        models,
                    ]
                )
            )
        for http_port, _, _ in WORKERS:
            _wait(f"http://127.0.0.1:{http_port}/v2/health/ready", f"worker on {http_port}", processes)
        progress.say(f"workers ready; starting the gateway on {GATEWAY} ...")
        processes.append(_spawn(["-m", "gateway.cli", "run", "--config", str(CONFIG)]))
        _wait(f"{ADMIN}/readyz", "gateway", processes)
        progress.say("gateway ready")
        print(EXAMPLES, flush=True)
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"turnout demo: {exc}", file=sys.stderr)
        _stop(processes)
        return 1
    print("\nstopping ...", flush=True)
    _stop(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

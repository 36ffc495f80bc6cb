"""tritonclient.grpc through turnout's main port to turnout's own workers, with the demo's config:
the demo's gRPC contract. tritonclient pins protobuf below the project's, so its calls run as
scripts in a venv of their own (tests/interop/server_venvs.py)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from inference_workers.grpc_codec import pb, pb_grpc
from tests.inference_workers.support import start_worker
from tests.interop.server_venvs import server_python
from tests.support.processes import GatewayProcess, free_port, start_gateway

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "config" / "examples" / "demo.yaml"
SCRIPT_TIMEOUT_S = 120
# One patient's 30 features (the demo's curl example).
FEATURES = [
    17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871,
    1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193,
    25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189,
]  # fmt: skip

CLIENT = """
import asyncio, json, sys
import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio

target, features = sys.argv[1], np.array([json.loads(sys.argv[2])], dtype=np.float32)

def inputs():
    tensor = triton.InferInput("features", [1, 30], "FP32")
    tensor.set_data_from_numpy(features)
    return [tensor]

def answer(result):
    return {"probabilities": result.as_numpy("probabilities").reshape(-1).tolist(),
            "label": result.as_numpy("label").reshape(-1).tolist()}

client = triton.InferenceServerClient(target)
out = {"live": client.is_server_live(), "ready": client.is_server_ready(),
       "metadata": client.get_model_metadata("risk", as_json=True)}
for version in ("1", "2", ""):
    out["sync" + version] = answer(client.infer("risk", inputs(), model_version=version))

async def aio():
    async with triton_aio.InferenceServerClient(target) as aclient:
        out["aio2"] = answer(await aclient.infer("risk", inputs(), model_version="2"))

asyncio.run(aio())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def demo(demo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    models = demo_models
    logs = tmp_path_factory.mktemp("grpc-demo-logs")
    worker_a = start_worker(models, logs, "--models", "risk:1,risk-mlp,diabetes")
    worker_b = start_worker(models, logs, "--models", "risk:2,risk-mlp,diabetes")
    gateway: GatewayProcess | None = None
    try:
        port, admin_port = free_port(), free_port()
        text = DEMO_CONFIG.read_text()
        for old, new in (
            ("port: 8080\n", f"port: {port}\n"),
            ("port: 9901\n", f"port: {admin_port}\n"),
            (
                "127.0.0.1:8001, grpc_port: 8011",
                f"127.0.0.1:{worker_a.http_port}, grpc_port: {worker_a.grpc_port}",
            ),
            (
                "127.0.0.1:8002, grpc_port: 8012",
                f"127.0.0.1:{worker_b.http_port}, grpc_port: {worker_b.grpc_port}",
            ),
            ("${TURNOUT_ACCESS_LOG:-stdout}", str(logs / "access.log")),
            ("sqlite_path: var/turnout.db", f"sqlite_path: {logs / 'turnout.db'}"),
            ("../../var/monitoring/", f"{logs}/"),
        ):
            assert old in text, f"demo.yaml no longer holds {old!r}: update this test"
            text = text.replace(old, new)
        from gateway.demo import write_references

        write_references(logs)
        path = logs / "demo.yaml"
        path.write_text(text)
        gateway = start_gateway(path, port, admin_port, logs)
        yield gateway
    finally:
        if gateway is not None:
            gateway.stop()
        worker_b.stop()
        worker_a.stop()


def _rest(gateway: GatewayProcess, version: str) -> dict[str, Any]:
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": FEATURES}]}
    request = urllib.request.Request(
        f"{gateway.url}/v2/models/risk/versions/{version}/infer",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        outputs = {o["name"]: o["data"] for o in json.loads(answer.read())["outputs"]}
    return {"probabilities": outputs["probabilities"], "label": outputs["label"]}


def test_tritonclient_calls_the_demo_over_grpc_on_the_main_port(demo: GatewayProcess) -> None:
    python = server_python("tritonclient")
    target = demo.url.removeprefix("http://")
    run = subprocess.run(
        [str(python), "-c", CLIENT, target, json.dumps(FEATURES)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["live"] and out["ready"]
    assert out["metadata"]["name"] == "risk"
    one, two = _rest(demo, "1"), _rest(demo, "2")
    for key in ("probabilities", "label"):  # the same answers as over REST (one row each)
        assert out["sync1"][key] == pytest.approx(one[key])
        assert out["sync2"][key] == pytest.approx(two[key])
        assert out["aio2"][key] == pytest.approx(two[key])
    assert out["sync"] in (out["sync1"], out["sync2"])


def test_unversioned_calls_go_through_the_ab_experiment(demo: GatewayProcess) -> None:
    async def arms() -> dict[str, str]:
        seen = {}
        async with grpc.aio.insecure_channel(demo.url.removeprefix("http://")) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name="risk")
            request.inputs.add(name="features", datatype="FP32", shape=[1, 30])
            import struct

            request.raw_input_contents.append(struct.pack("<30f", *FEATURES))
            for user in range(20):
                call = stub.ModelInfer(request, metadata=(("x-user-id", f"u{user}"),))
                await call
                initial = dict(await call.initial_metadata())
                assert initial["x-turnout-experiment"] == "risk-ab"
                seen[f"u{user}"] = initial["x-turnout-arm"]
        return seen

    import asyncio

    assert set(asyncio.run(arms()).values()) == {"control", "treatment"}


def test_the_demos_printed_grpc_example_runs(demo: GatewayProcess) -> None:
    from gateway.demo import EXAMPLES, GATEWAY

    after = EXAMPLES.split("tritonclient[grpc]", 1)[1]
    script = after.split("<<'PY'\n", 1)[1].split("  PY\n", 1)[0]
    script = textwrap.dedent(script).replace(
        GATEWAY.removeprefix("http://"), demo.url.removeprefix("http://")
    )
    run = subprocess.run(
        [str(server_python("tritonclient")), "-c", script],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = run.stdout.splitlines()[:2]
    assert first.startswith("True")
    assert second.startswith("[[")

"""The worker's REST API against a real worker process: metadata, numbers, tensors, load reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import joblib
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from gateway.core.protocols.binary import HEADER_LENGTH
from gateway.core.protocols.oip_v2 import (
    InferRequest,
    RequestedOutput,
    Tensor,
    decode_response,
    encode_request,
)
from tests.inference_workers.conftest import ALL_DATATYPES
from tests.inference_workers.support import WorkerProcess


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def ort_session(repository: Path, model: str, version: int) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(repository / model / str(version) / "model.onnx"), providers=["CPUExecutionProvider"]
    )


async def infer(
    http: aiohttp.ClientSession, url: str, request: InferRequest, binary_inputs: bool = False
) -> tuple[aiohttp.ClientResponse, Any]:
    encoded = encode_request(request, binary_inputs=binary_inputs)
    headers = {"Content-Type": encoded.content_type}
    if encoded.header_length is not None:
        headers[HEADER_LENGTH] = str(encoded.header_length)
    async with http.post(url, data=encoded.body, headers=headers) as response:
        body = await response.read()
        if response.status != 200:
            raise AssertionError(f"{response.status}: {body!r}")
        return response, decode_response(body, response.headers.get(HEADER_LENGTH))


async def test_health_and_server_metadata(worker: WorkerProcess, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{worker.url}/v2/health/live") as response:
        assert response.status == 200
        assert await response.json() == {"live": True}
    async with http.get(f"{worker.url}/v2/health/ready") as response:
        assert response.status == 200
        assert await response.json() == {"ready": True}
    async with http.get(f"{worker.url}/v2") as response:
        metadata = await response.json()
    assert metadata["name"] == "turnout-worker"
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])


async def test_risk_metadata_matches_the_contract(worker: WorkerProcess, http: aiohttp.ClientSession) -> None:
    for path in ("/v2/models/risk", "/v2/models/risk/versions/1", "/v2/models/risk/versions/2"):
        async with http.get(worker.url + path) as response:
            assert response.status == 200
            metadata = await response.json()
        assert metadata == {
            "name": "risk",
            "versions": ["1", "2"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
                {"name": "label", "datatype": "INT64", "shape": [-1]},
            ],
        }
    async with http.get(f"{worker.url}/v2/models/diabetes") as response:
        diabetes = await response.json()
    assert diabetes["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}]
    assert diabetes["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1]}]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("binary_inputs", [False, True])
async def test_risk_answers_like_onnxruntime_in_process(
    worker: WorkerProcess,
    model_repository: Path,
    breast_cancer_rows: np.ndarray,
    http: aiohttp.ClientSession,
    version: int,
    binary_inputs: bool,
) -> None:
    rows = breast_cancer_rows[:17]
    expected_label, expected_probabilities = ort_session(model_repository, "risk", version).run(
        ["label", "probabilities"], {"features": rows}
    )
    request = InferRequest([Tensor("features", "FP32", rows)], id=f"req-{version}")
    response, decoded = await infer(
        http, f"{worker.url}/v2/models/risk/versions/{version}/infer", request, binary_inputs
    )
    assert decoded.model_name == "risk"
    assert decoded.model_version == str(version)
    assert decoded.id == f"req-{version}"
    outputs = {tensor.name: tensor for tensor in decoded.outputs}
    assert outputs["probabilities"].datatype == "FP32"
    assert outputs["probabilities"].shape == (17, 2)
    np.testing.assert_array_equal(outputs["probabilities"].data, expected_probabilities)
    assert outputs["label"].datatype == "INT64"
    np.testing.assert_array_equal(outputs["label"].data, expected_label)
    assert response.headers["x-turnout-queue-depth"] == "0"
    assert response.headers["x-turnout-inflight"] == "0"


async def test_without_a_version_the_highest_version_answers(
    worker: WorkerProcess, breast_cancer_rows: np.ndarray, http: aiohttp.ClientSession
) -> None:
    request = InferRequest([Tensor("features", "FP32", breast_cancer_rows[:1])])
    _, decoded = await infer(http, f"{worker.url}/v2/models/risk/infer", request)
    assert decoded.model_version == "2"


async def test_diabetes_value_is_rank_one(
    worker: WorkerProcess, model_repository: Path, http: aiohttp.ClientSession
) -> None:
    from sklearn.datasets import load_diabetes

    rows = load_diabetes(return_X_y=True)[0][:5].astype(np.float32)
    (expected,) = ort_session(model_repository, "diabetes", 1).run(["value"], {"features": rows})
    _, decoded = await infer(
        http, f"{worker.url}/v2/models/diabetes/infer", InferRequest([Tensor("features", "FP32", rows)])
    )
    (value,) = decoded.outputs
    assert value.name == "value"
    assert value.shape == (5,)
    np.testing.assert_array_equal(value.data, expected)


async def test_selected_outputs_in_binary_and_parameters_echoed(
    worker: WorkerProcess, model_repository: Path, breast_cancer_rows: np.ndarray, http: aiohttp.ClientSession
) -> None:
    rows = breast_cancer_rows[20:23]
    (expected,) = ort_session(model_repository, "risk", 1).run(["probabilities"], {"features": rows})
    request = InferRequest(
        [Tensor("features", "FP32", rows)],
        outputs=[RequestedOutput("probabilities", binary=True)],
        parameters={"trace": "abc", "priority": 2},
    )
    response, decoded = await infer(http, f"{worker.url}/v2/models/risk/versions/1/infer", request)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert int(response.headers[HEADER_LENGTH]) > 0
    assert [tensor.name for tensor in decoded.outputs] == ["probabilities"]
    np.testing.assert_array_equal(decoded.outputs[0].data, expected)
    assert decoded.parameters == {"trace": "abc", "priority": 2}


async def test_request_level_binary_output(
    worker: WorkerProcess, breast_cancer_rows: np.ndarray, http: aiohttp.ClientSession
) -> None:
    body = orjson.dumps(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [
                {"name": "features", "datatype": "FP32", "shape": [1, 30], "data": breast_cancer_rows[0]}
            ],
            "outputs": [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": False}}],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    async with http.post(f"{worker.url}/v2/models/risk/infer", data=body) as response:
        raw = await response.read()
        header_length = int(response.headers[HEADER_LENGTH])
    header = orjson.loads(raw[:header_length])
    label, probabilities = header["outputs"]
    assert label["parameters"] == {"binary_data_size": 8}
    assert "data" not in label
    assert len(probabilities["data"]) == 2
    assert np.frombuffer(raw[header_length:], dtype="<i8").tolist() in ([0], [1])


def _echo_tensors() -> list[Tensor]:
    rng = np.random.default_rng(7)
    tensors = []
    for datatype in ALL_DATATYPES:
        name = f"in_{datatype.lower()}"
        if datatype == "BOOL":
            data: np.ndarray = rng.integers(0, 2, (2, 3)).astype(bool)
        elif datatype == "BYTES":
            data = np.array([[b"a", "\u00e9t\u00e9".encode(), b""], [b"x" * 40, b"0", b"z"]], dtype=object)
        elif datatype.startswith("FP"):
            data = rng.normal(size=(2, 3)).astype(
                {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype]
            )
        else:
            dtype = np.dtype(datatype.lower())
            info = np.iinfo(dtype)
            data = np.array([[info.min, info.max, 0], [1, 2, 3]], dtype=dtype)
        tensors.append(Tensor(name, datatype, data))
    return tensors


@pytest.mark.parametrize("binary_inputs", [False, True])
@pytest.mark.parametrize("binary_outputs", [False, True])
async def test_every_datatype_round_trips_through_the_worker(
    worker: WorkerProcess, http: aiohttp.ClientSession, binary_inputs: bool, binary_outputs: bool
) -> None:
    tensors = _echo_tensors()
    request = InferRequest(tensors, binary_output=binary_outputs)
    _, decoded = await infer(http, f"{worker.url}/v2/models/echo/infer", request, binary_inputs)
    outputs = {tensor.name: tensor for tensor in decoded.outputs}
    for tensor in tensors:
        echoed = outputs["out_" + tensor.name.removeprefix("in_")]
        assert echoed.datatype == tensor.datatype
        assert echoed.shape == (2, 3)
        np.testing.assert_array_equal(echoed.data, tensor.data)


async def test_sklearn_backend_answers_like_the_pipeline(
    worker: WorkerProcess, model_repository: Path, breast_cancer_rows: np.ndarray, http: aiohttp.ClientSession
) -> None:
    pipeline = joblib.load(model_repository / "risk_sklearn" / "1" / "model.joblib")
    rows = breast_cancer_rows[100:110]
    request = InferRequest([Tensor("features", "FP32", rows)], binary_output=True)
    _, decoded = await infer(http, f"{worker.url}/v2/models/risk_sklearn/infer", request)
    outputs = {tensor.name: tensor for tensor in decoded.outputs}
    np.testing.assert_array_equal(
        outputs["probabilities"].data, pipeline.predict_proba(rows).astype(np.float32)
    )
    np.testing.assert_array_equal(outputs["label"].data, pipeline.predict(rows))
    assert outputs["label"].datatype == "INT64"


async def test_queue_depth_and_inflight_are_reported(
    worker: WorkerProcess, http: aiohttp.ClientSession
) -> None:
    url = f"{worker.url}/v2/models/slow/infer"

    async def slow_call() -> dict[str, str]:
        request = InferRequest([Tensor("x", "FP32", np.array([[0.3, 1.0]], dtype=np.float32))])
        response, decoded = await infer(http, url, request)
        np.testing.assert_array_equal(decoded.outputs[0].data, np.array([1.3], dtype=np.float32))
        return dict(response.headers)

    calls = [asyncio.create_task(slow_call()) for _ in range(3)]
    deadline = asyncio.get_running_loop().time() + 10
    seen_queue = False
    while not seen_queue and asyncio.get_running_loop().time() < deadline:
        async with http.get(f"{worker.url}/metrics") as response:
            text = await response.text()
        seen_queue = 'turnout_worker_queue_depth{model="slow",version="1"} 2.0' in text
        await asyncio.sleep(0.02)
    headers = await asyncio.gather(*calls)
    assert seen_queue, "three requests on a one-instance model: two should have queued"
    assert max(int(each["x-turnout-queue-depth"]) for each in headers) >= 1
    assert all(int(each["x-turnout-inflight"]) >= 0 for each in headers)


async def test_metrics_expose_latency_and_batch_size(
    worker: WorkerProcess, breast_cancer_rows: np.ndarray, http: aiohttp.ClientSession
) -> None:
    request = InferRequest([Tensor("features", "FP32", breast_cancer_rows[:4])])
    await infer(http, f"{worker.url}/v2/models/risk/versions/1/infer", request)
    async with http.get(f"{worker.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert 'turnout_worker_batch_size_bucket{le="4.0",model="risk",version="1"}' in text
    assert 'turnout_worker_inference_seconds_count{model="risk",version="1"}' in text
    assert 'turnout_worker_inferences_total{model="risk",outcome="success",version="1"}' in text
    assert "turnout_worker_models_loaded 6.0" in text

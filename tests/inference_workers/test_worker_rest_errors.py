"""Client mistakes get the right status and a message that says what and where; never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest

from gateway.core.protocols.binary import HEADER_LENGTH
from tests.inference_workers.support import WorkerProcess

ROW = [0.5] * 30


def features(**overrides: Any) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": "features", "datatype": "FP32", "shape": [1, 30], "data": ROW}
    tensor.update(overrides)
    return {"inputs": [tensor]}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=body, headers=headers or {}) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        return response.status, orjson.loads(await response.read())


BAD_JSON_BODIES: list[tuple[str, bytes, str]] = [
    ("not json", b"{", "request body is not valid JSON"),
    ("not an object", b"[1, 2]", "request body must be a JSON object, got list"),
    ("no inputs", b"{}", "'inputs' must be a non-empty list"),
    ("empty inputs", b'{"inputs": []}', "'inputs' must be a non-empty list"),
    ("input not an object", b'{"inputs": [3]}', "input #0: a tensor must be a JSON object"),
    ("input without a name", orjson.dumps(features(name="")), "input #0: 'name' must be a non-empty string"),
    (
        "unknown datatype",
        orjson.dumps(features(datatype="FP8")),
        "input 'features': unsupported datatype 'FP8'",
    ),
    (
        "datatype differs from the model",
        orjson.dumps(features(datatype="FP64")),
        "input 'features': datatype FP64 does not match the model's FP32",
    ),
    (
        "shape and data disagree",
        orjson.dumps(features(shape=[2, 30], data=[0.5] * 59)),
        "input 'features': shape [2, 30] needs 60 values, got 59",
    ),
    (
        "wrong rank",
        orjson.dumps(features(shape=[30])),
        "input 'features': shape [30] has rank 1, the model needs rank 2 ([-1, 30])",
    ),
    (
        "wrong fixed dimension",
        orjson.dumps(features(shape=[1, 29], data=[0.5] * 29)),
        "input 'features': shape [1, 29] does not match the model's [-1, 30] at dimension 1",
    ),
    (
        "batch above max_batch_size",
        orjson.dumps(features(shape=[65, 30], data=[0.5] * 65 * 30)),
        "input 'features': batch size 65 exceeds the max_batch_size 64 of model 'risk' version 2",
    ),
    (
        "empty batch",
        orjson.dumps(features(shape=[0, 30], data=[])),
        "input 'features': batch size must be at least 1, got 0",
    ),
    (
        "unknown input",
        orjson.dumps(features(name="feats")),
        "input 'feats' is not an input of model 'risk' version 2 (inputs: features)",
    ),
    (
        "strings for numbers",
        orjson.dumps(features(data=["a"] * 30)),
        "datatype FP32 needs numbers, got strings",
    ),
    ("nulls for numbers", orjson.dumps(features(data=[None] * 30)), "datatype FP32 needs numbers, got nulls"),
    (
        "ragged data",
        orjson.dumps(features(data=[[1.0, 2.0], [3.0]])),
        "input 'features': data is a ragged array",
    ),
    ("negative dimension", orjson.dumps(features(shape=[-1, 30])), "'shape' must be a list of non-negative"),
    ("shape not a list", orjson.dumps(features(shape="1x30")), "'shape' must be a list of non-negative"),
    (
        "neither data nor binary size",
        orjson.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30]}]}),
        "input 'features': needs 'data' or a 'binary_data_size' parameter",
    ),
    (
        "unknown output",
        orjson.dumps({**features(), "outputs": [{"name": "score"}]}),
        "output 'score' is not an output of model 'risk' version 2 (outputs: probabilities, label)",
    ),
    ("id not a string", orjson.dumps({**features(), "id": 7}), "'id' must be a string"),
    ("parameters not an object", orjson.dumps({**features(), "parameters": [1]}), "must be a JSON object"),
    (
        "parameter not a scalar",
        orjson.dumps({**features(), "parameters": {"a": {"b": 1}}}),
        "request parameters: 'a' must be a string, number or boolean",
    ),
    (
        "input twice",
        orjson.dumps({"inputs": features()["inputs"] * 2}),
        "input 'features' appears more than once",
    ),
    (
        "both data and binary size",
        orjson.dumps(features(parameters={"binary_data_size": 120})),
        "input 'features': has both 'data' and 'binary_data_size'",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "message"), BAD_JSON_BODIES, ids=[case[0] for case in BAD_JSON_BODIES]
)
async def test_bad_json_requests_are_400_with_a_precise_message(
    worker: WorkerProcess, http: aiohttp.ClientSession, case: str, body: bytes, message: str
) -> None:
    status, answer = await post(http, f"{worker.url}/v2/models/risk/infer", body)
    assert status == 400, answer
    assert message in answer["error"]
    assert answer["code"] == "bad_request"


async def test_integer_out_of_range_and_missing_input_name_the_tensor(
    worker: WorkerProcess, http: aiohttp.ClientSession
) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "in_int8", "datatype": "INT8", "shape": [1, 2], "data": [1, 300]}]}
    )
    status, answer = await post(http, f"{worker.url}/v2/models/echo/infer", body)
    assert (status, answer["error"]) == (400, "input 'in_int8': value 300 is out of range for INT8")
    body = orjson.dumps(
        {"inputs": [{"name": "in_int8", "datatype": "INT8", "shape": [1, 2], "data": [1, 3]}]}
    )
    status, answer = await post(http, f"{worker.url}/v2/models/echo/infer", body)
    assert status == 400
    assert answer["error"].startswith(
        "input 'in_bool' is missing; model 'echo' version 1 needs in_bool, in_int8"
    )


def binary_body(size: int, raw: bytes) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [1, 30],
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    return header + raw, {HEADER_LENGTH: str(len(header))}


@pytest.mark.parametrize(
    ("size", "raw", "header_override", "message"),
    [
        (
            120,
            np.zeros(30, np.float32).tobytes(),
            "abc",
            "Inference-Header-Content-Length: 'abc' is not an integer",
        ),
        (
            120,
            np.zeros(30, np.float32).tobytes(),
            "100000",
            "Inference-Header-Content-Length: 100000 is outside",
        ),
        (
            120,
            np.zeros(20, np.float32).tobytes(),
            None,
            "input 'features': binary_data_size is 120 but only 80",
        ),
        (120, np.zeros(31, np.float32).tobytes(), None, "binary data: 4 bytes after the last tensor's"),
        (
            100,
            np.zeros(25, np.float32).tobytes(),
            None,
            "input 'features': shape [1, 30] of FP32 needs 120 bytes, got 100",
        ),
        (-1, b"", None, "input 'features': 'binary_data_size' must be a non-negative integer"),
    ],
)
async def test_bad_binary_requests_are_400(
    worker: WorkerProcess,
    http: aiohttp.ClientSession,
    size: int,
    raw: bytes,
    header_override: str | None,
    message: str,
) -> None:
    body, headers = binary_body(size, raw)
    if header_override is not None:
        headers[HEADER_LENGTH] = header_override
    status, answer = await post(http, f"{worker.url}/v2/models/risk/infer", body, headers)
    assert status == 400, answer
    assert message in answer["error"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2/models/nope/infer", "unknown model 'nope'"),
        ("/v2/models/risk/versions/9/infer", "unknown version '9' of model 'risk' (versions: 1, 2)"),
        (
            "/v2/models/risk/versions/latest/infer",
            "unknown version 'latest' of model 'risk' (versions: 1, 2)",
        ),
    ],
)
async def test_unknown_models_and_versions_are_404(
    worker: WorkerProcess, http: aiohttp.ClientSession, path: str, message: str
) -> None:
    status, answer = await post(http, worker.url + path, orjson.dumps(features()))
    assert status == 404
    assert answer["error"] == message


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/nope", 404),
        ("GET", "/v2/models/nope/ready", 404),
        ("GET", "/v2/models/risk/versions/3", 404),
        ("GET", "/v2/nothing/here", 404),
        ("GET", "/v2/models/risk/infer", 405),
        ("POST", "/v2/repository/models/nope/load", 404),
    ],
)
async def test_other_errors_are_json_too(
    worker: WorkerProcess, http: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    async with http.request(method, worker.url + path) as response:
        assert response.status == status
        assert response.headers["Content-Type"].startswith("application/json")
        answer = await response.json()
    assert answer["error"]

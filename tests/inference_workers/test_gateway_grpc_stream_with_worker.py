"""tritonclient.grpc's streaming API (`start_stream`/`async_stream_infer`, and the aio client's
`stream_infer`) through turnout's main port to a real worker's `ModelStreamInfer`: the same answers,
in the same order, as streaming to the worker directly, and a failed request answered inside the
stream without ending it. The client runs in the tritonclient venv (tests/interop/server_venvs.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from tests.conftest import gateway_config
from tests.inference_workers.support import WorkerProcess
from tests.interop.server_venvs import server_python

# Generous: the client venv's first imports are slow on a loaded machine.
SCRIPT_TIMEOUT_S = 120

CLIENT = """
import asyncio, json, queue, sys
import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio

target, rows = sys.argv[1], json.loads(sys.argv[2])

def inputs(row):
    tensor = triton.InferInput("features", [1, len(row)], "FP32")
    tensor.set_data_from_numpy(np.array([row], dtype=np.float32))
    return [tensor]

out = {}
answers = queue.Queue()
client = triton.InferenceServerClient(target)
client.start_stream(lambda result, error: answers.put((result, error)))
for i, row in enumerate(rows):
    client.async_stream_infer("risk", inputs(row), model_version="1", request_id=f"s{i}")
client.async_stream_infer("nope", inputs(rows[0]), request_id="bad")
client.async_stream_infer("risk", inputs(rows[0]), model_version="2", request_id="after")
got = []
for _ in range(len(rows) + 2):
    result, error = answers.get(timeout=60)
    if error is not None:
        got.append(["error", str(error)])
    else:
        response = result.get_response()
        got.append([response.id, response.model_version, result.as_numpy("probabilities").tolist()])
client.stop_stream()
out["sync"] = got

async def aio():
    async with triton_aio.InferenceServerClient(target) as aclient:
        async def requests():
            for i, row in enumerate(rows):
                yield {"model_name": "risk", "model_version": "2", "inputs": inputs(row),
                       "request_id": f"a{i}"}
        got = []
        async for result, error in aclient.stream_infer(requests()):
            assert error is None, error
            got.append([result.get_response().id, result.as_numpy("label").tolist()])
        out["aio"] = got

asyncio.run(aio())
print(json.dumps(out))
"""


async def _stream(python: Any, target: str, rows: list[list[float]]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        CLIENT,
        target,
        json.dumps(rows),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_tritonclient_streams_through_the_main_port_to_a_worker(
    make_gateway: Any, worker: WorkerProcess, breast_cancer_rows: np.ndarray
) -> None:
    python = server_python("tritonclient")
    rows = breast_cancer_rows[:4].tolist()
    address = f"127.0.0.1:{worker.grpc_port}"
    config = gateway_config(
        [address],
        routes=[
            {"name": "risk", "match": {"model": "risk"}, "backend": {"cluster": "workers"}},
            {
                "name": "oip",
                "match": {"grpc_service": "inference.GRPCInferenceService"},
                "backend": {"cluster": "workers"},
            },
        ],
    )
    config["clusters"] = {"workers": {"endpoints": [address]}}
    async with make_gateway(config) as gw:
        through = await _stream(python, f"127.0.0.1:{gw.data_port}", rows)
    direct = await _stream(python, address, rows)

    assert through == direct
    sync = through["sync"]
    assert [answer[0] for answer in sync] == ["s0", "s1", "s2", "s3", "error", "after"]
    assert all(answer[1] == "1" for answer in sync[:4]) and sync[5][1] == "2"
    assert "nope" in sync[4][1]
    assert len(sync[0][2]) == 1 and abs(sum(sync[0][2][0]) - 1.0) < 1e-5
    assert [answer[0] for answer in through["aio"]] == ["a0", "a1", "a2", "a3"]

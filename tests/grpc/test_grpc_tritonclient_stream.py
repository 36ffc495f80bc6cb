"""tritonclient.grpc's streaming API (`start_stream`/`async_stream_infer`, and the aio client's
`stream_infer`) through turnout's main port to a small in-process upstream that serves Triton's
`ModelStreamInfer` (the same through turnout to a real worker:
tests/inference_workers/test_gateway_grpc_stream_with_worker.py). The client runs in the
tritonclient venv (tests/interop/server_venvs.py)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc

from inference_workers.grpc_codec import pb
from tests.conftest import gateway_config
from tests.interop.server_venvs import server_python

STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
SCRIPT_TIMEOUT_S = 120

CLIENT = """
import asyncio, json, queue, sys
import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio

target = sys.argv[1]

def inputs(row):
    tensor = triton.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.array([row], dtype=np.float32))
    return [tensor]

out = {}
answers = queue.Queue()
client = triton.InferenceServerClient(target)
client.start_stream(lambda result, error: answers.put((result, error)))
for i in range(3):
    client.async_stream_infer("doubler", inputs([i, i + 1, i + 2]), request_id=f"s{i}")
got = []
for _ in range(3):
    result, error = answers.get(timeout=30)
    assert error is None, error
    got.append([result.get_response().id, result.as_numpy("y").tolist()])
client.stop_stream()
out["sync"] = got

async def aio():
    async with triton_aio.InferenceServerClient(target) as aclient:
        async def requests():
            for i in range(2):
                yield {"model_name": "doubler", "inputs": inputs([i, 0, 1]), "request_id": f"a{i}"}
        got = []
        async for result, error in aclient.stream_infer(requests()):
            assert error is None, error
            got.append([result.get_response().id, result.as_numpy("y").tolist()])
        out["aio"] = got

asyncio.run(aio())
print(json.dumps(out))
"""


def _doubled(request: bytes) -> bytes:
    """A ModelStreamInferResponse (field 2: the ModelInferResponse) with input x doubled as y."""
    infer = pb.ModelInferRequest.FromString(request)
    answer = pb.ModelInferResponse(model_name=infer.model_name, id=infer.id)
    answer.outputs.add(name="y", datatype="FP32", shape=list(infer.inputs[0].shape))
    values = struct.unpack(f"<{len(infer.raw_input_contents[0]) // 4}f", infer.raw_input_contents[0])
    answer.raw_output_contents.append(struct.pack(f"<{len(values)}f", *(2 * v for v in values)))
    body = bytes(answer.SerializeToString())
    size, length = bytearray(), len(body)
    while length >= 0x80:
        size.append(length & 0x7F | 0x80)
        length >>= 7
    size.append(length)
    return b"\x12" + bytes(size) + body


class _Streamer(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio is untyped
    async def _stream(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            yield _doubled(request)

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        if details.method == STREAM_METHOD:
            return grpc.stream_stream_rpc_method_handler(self._stream)
        return None


async def test_tritonclient_streams_through_the_main_port(make_gateway: Any) -> None:
    python = server_python("tritonclient")
    server = grpc.aio.server(handlers=[_Streamer()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = gateway_config(
            [f"127.0.0.1:{port}"],
            routes=[{"name": "doubler", "match": {"model": "doubler"}, "backend": {"cluster": "up"}}],
        )
        async with make_gateway(config) as gw:
            process = await asyncio.create_subprocess_exec(
                str(python),
                "-c",
                CLIENT,
                f"127.0.0.1:{gw.data_port}",
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
    finally:
        await server.stop(0)
    out = json.loads(stdout)
    assert sorted(out["sync"]) == [
        ["s0", [[0.0, 2.0, 4.0]]],
        ["s1", [[2.0, 4.0, 6.0]]],
        ["s2", [[4.0, 6.0, 8.0]]],
    ]
    assert out["aio"] == [["a0", [[0.0, 0.0, 2.0]]], ["a1", [[2.0, 0.0, 2.0]]]]

"""A real OIP v2 model on loopback for the batching tests: model `m` over gRPC and REST, each
output echoing its input. It records each call's rows and what the call carried (metadata or
headers), and answers with the initial and trailing metadata (gRPC) or headers (REST) it is given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
from aiohttp import web

from inference_workers.grpc_codec import pb
from tests.support.processes import free_port

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# 8 calls sent together, a batch window wide enough for all of them on a busy machine.
CALLS = 8
BATCHING = {"batching": {"max_batch_size": CALLS, "max_queue_delay": "200ms"}}

Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass
class EchoModel:
    """What the model answers with, and what it saw; `serving` gives it its ports."""

    initial: Metadata = ()
    trailing: Metadata = ()
    headers: dict[str, str] = field(default_factory=dict)
    grpc_port: int = 0
    http_port: int = 0
    received: list[dict[str, str]] = field(default_factory=list)
    """Each call's metadata or headers, names in lower case."""
    rows: list[int] = field(default_factory=list)
    """Each call's rows (its first input's first dimension)."""

    @property
    def endpoint(self) -> dict[str, Any]:
        """The endpoint of a cluster that reaches it both ways."""
        return {"address": f"127.0.0.1:{self.http_port}", "grpc_port": self.grpc_port}

    async def _infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        message = pb.ModelInferRequest.FromString(request)
        self.received.append({key: str(value) for key, value in context.invocation_metadata() or ()})
        self.rows.append(message.inputs[0].shape[0])
        if self.initial:
            await context.send_initial_metadata(self.initial)
        if self.trailing:
            context.set_trailing_metadata(self.trailing)
        answer = pb.ModelInferResponse(model_name=message.model_name, id=message.id)
        for tensor in message.inputs:
            answer.outputs.add(name="y", datatype=tensor.datatype, shape=tensor.shape)
        answer.raw_output_contents.extend(message.raw_input_contents)
        return bytes(answer.SerializeToString())

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        return grpc.unary_unary_rpc_method_handler(self._infer) if details.method == MODEL_INFER else None

    async def _rest_infer(self, request: web.Request) -> web.Response:
        self.received.append({key.lower(): value for key, value in request.headers.items()})
        body = orjson.loads(await request.read())
        tensor = body["inputs"][0]
        self.rows.append(tensor["shape"][0])
        output = {
            "name": "y",
            "datatype": tensor["datatype"],
            "shape": tensor["shape"],
            "data": tensor["data"],
        }
        answer = {"model_name": "m", "outputs": [output], **({"id": body["id"]} if "id" in body else {})}
        return web.Response(body=orjson.dumps(answer), content_type="application/json", headers=self.headers)


@asynccontextmanager
async def serving(model: EchoModel) -> AsyncIterator[EchoModel]:
    """`model` on a gRPC and an HTTP port of loopback, until the block ends."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((model,))
    model.grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = web.Application()
    app.router.add_post("/v2/models/m/infer", model._rest_infer)
    runner = web.AppRunner(app)
    await runner.setup()
    model.http_port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", model.http_port).start()
        yield model
    finally:
        await runner.cleanup()
        await server.stop(None)

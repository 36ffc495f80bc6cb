"""Real gRPC upstreams on loopback for the front door's tests.

`OipUpstream` serves `inference.GRPCInferenceService` through the generated stubs and answers each
call with its own name in the response (and in its initial and trailing metadata), so a test can
tell which upstream answered. `EchoUpstream` serves a test service of every call shape over raw
bytes (`test.Echo/Unary|ServerStream|ClientStream|Bidi|Sleep`), and answers Triton's
`ModelStreamInfer` by echoing each message after its own name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from inference_workers.grpc_codec import pb, pb_grpc


class _Oip(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen_metadata: list[dict[str, Any]] = []

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ModelReadyResponse(ready=request.name == "risk")

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.seen_metadata.append(dict(context.invocation_metadata()))
        if request.id == "bad":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input 'x' has the wrong shape")
        await context.send_initial_metadata((("x-upstream", self.name),))
        context.set_trailing_metadata((("x-upstream-trailer", self.name),))
        # The answer echoes the raw tensors, reversed, so a test can compare with a direct call.
        return pb.ModelInferResponse(
            model_name=request.model_name,
            model_version=request.model_version or self.name,
            id=request.id,
            raw_output_contents=[raw[::-1] for raw in request.raw_input_contents],
        )


class _Echo(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.sleeping = 0
        """`Sleep` calls in progress: a test waits on it instead of on time."""
        self.slept = 0
        """`Sleep` calls received in all."""

    async def _model_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            yield self.name + b":" + message

    async def _unary(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"echo:" + request

    async def _sleep(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.sleeping += 1
        self.slept += 1
        try:
            await asyncio.sleep(float(request.decode()))
        finally:
            self.sleeping -= 1
        return b"slept"

    async def _server_stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for i in range(int(request.decode())):
            yield str(i).encode()

    async def _client_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        return b"+".join([message async for message in requests])

    async def _bidi(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            yield message.upper()

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        if method == "/test.Echo/Unary":
            return grpc.unary_unary_rpc_method_handler(self._unary)
        if method == "/test.Echo/Sleep":
            return grpc.unary_unary_rpc_method_handler(self._sleep)
        if method == "/test.Echo/ServerStream":
            return grpc.unary_stream_rpc_method_handler(self._server_stream)
        if method == "/test.Echo/ClientStream":
            return grpc.stream_unary_rpc_method_handler(self._client_stream)
        if method == "/test.Echo/Bidi":
            return grpc.stream_stream_rpc_method_handler(self._bidi)
        if method == "/inference.GRPCInferenceService/ModelStreamInfer":
            return grpc.stream_stream_rpc_method_handler(self._model_stream)
        return None


class _Handlers:
    """Collects the handlers the generated `add_..._to_server` would register on a server."""

    def __init__(self) -> None:
        self.methods: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same methods as add_registered_method_handlers receives

    def add_registered_method_handlers(self, service: str, methods: dict[str, Any]) -> None:
        self.methods.update(methods)


def _oip_handlers(servicer: _Oip) -> grpc.GenericRpcHandler:
    """The servicer's methods, less ModelStreamInfer: `_Echo` answers that one over raw bytes."""
    collected = _Handlers()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, collected)
    del collected.methods["ModelStreamInfer"]
    return grpc.method_handlers_generic_handler("inference.GRPCInferenceService", collected.methods)


class Upstream:
    """A grpc.aio server on a free loopback port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.oip = _Oip(name)
        self.server = grpc.aio.server()
        self.echo = _Echo(name)
        self.server.add_generic_rpc_handlers((_oip_handlers(self.oip), self.echo))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> Upstream:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(None)

"""The worker's `inference.GRPCInferenceService` on grpc.aio.

Each RPC calls the same `InferenceService` as REST does; gateway errors become gRPC statuses
(400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 503 -> UNAVAILABLE, ...). ModelInfer reports the worker's
load in its trailing metadata under the same names as the REST headers.

ModelStreamInfer (Triton's bidirectional stream) answers each request message with one
`ModelStreamInferResponse`, in the order the requests came: the inference response, or the error in
`error_message` with the stream left open for the next request, as Triton does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar

import grpc

from gateway.core.errors import GatewayError
from inference_workers.grpc_codec import pb, pb_grpc, request_from_proto, response_to_proto
from inference_workers.rest import INFLIGHT_HEADER, MAX_BODY_BYTES, QUEUE_DEPTH_HEADER
from inference_workers.service import InferenceService

log = logging.getLogger(__name__)

# The same ceiling as a REST body, so a batch that fits one transport fits the other (gRPC's own
# default of 4 MiB is smaller than a modest image batch).
MAX_MESSAGE_BYTES: Final = MAX_BODY_BYTES

_STATUS_CODES: Final = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

T = TypeVar("T")


class InferenceServicer:
    """Implements the seven RPCs; registered with the generated `add_..._to_server`."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self._service.is_live())

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._service.is_ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        ready = await _answer(
            context, lambda: self._service.is_model_ready(request.name, request.version or None)
        )
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self._service.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        metadata = await _answer(
            context, lambda: self._service.model_metadata(request.name, request.version or None)
        )
        return pb.ModelMetadataResponse(**metadata.as_json())

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        try:
            model, version, decoded, raw = request_from_proto(request)
            response = await self._service.infer(model, version, decoded)
            message = response_to_proto(response, raw)
        except GatewayError as exc:
            context.set_trailing_metadata(self._load_metadata())
            await context.abort(_STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        context.set_trailing_metadata(self._load_metadata())
        return message

    async def ModelStreamInfer(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        # One request at a time: answers keep the order of the requests without a reorder buffer,
        # and a client that wants more in flight opens more streams (or calls ModelInfer).
        async for request in requests:
            yield await self._stream_answer(request)
        context.set_trailing_metadata(self._load_metadata())

    async def _stream_answer(self, request: Any) -> Any:
        try:
            model, version, decoded, raw = request_from_proto(request)
            response = await self._service.infer(model, version, decoded)
            return pb.ModelStreamInferResponse(infer_response=response_to_proto(response, raw))
        except GatewayError as exc:
            return pb.ModelStreamInferResponse(error_message=exc.message)
        except Exception:  # the stream outlives one bad request, as a unary call would
            log.exception("stream inference request failed")
            return pb.ModelStreamInferResponse(error_message="internal error in the worker")

    def _load_metadata(self) -> tuple[tuple[str, str], ...]:
        load = self._service.load
        return ((QUEUE_DEPTH_HEADER, str(load.waiting)), (INFLIGHT_HEADER, str(load.running)))


async def _answer(context: Any, compute: Callable[[], T]) -> T:
    """`compute()`, with a gateway error turned into the RPC's status."""
    try:
        return compute()
    except GatewayError as exc:
        await context.abort(_STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        raise  # abort() raises; this only tells the type checker so


def create_grpc_server(service: InferenceService, host: str, port: int) -> tuple[Any, int]:
    """A grpc.aio server with the inference service registered, bound but not started; and its port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    return server, int(bound)

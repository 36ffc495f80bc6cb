"""The OIP v2 protobuf classes, loaded on first use, and a model's metadata fetched over gRPC.

The relay carries messages as bytes and never needs these classes; only a route that validates or
batches `ModelInfer` calls decodes one, so the generated modules (which come with the `workers`
extra) are imported then, not when the front door starts.

`GrpcMetadataFetcher` is the validation filter's source of model metadata on a gRPC route: it asks
an endpoint of the route's cluster `ModelMetadata`, and answers the same JSON-shaped document as the
gateway's own fetcher, which asks `GET /v2/models/{model}`. A cluster that does not answer gRPC is
asked over HTTP instead: a gRPC call that reaches a REST route must not take that route's metadata
away from its REST requests.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from gateway.core.errors import ServiceUnavailable

if TYPE_CHECKING:
    from gateway.grpc.channels import UpstreamChannels
    from gateway.runtime import Runtime

METADATA_PATH = "/inference.GRPCInferenceService/ModelMetadata"
# What a gRPC call to a server that does not speak gRPC (or not this service) ends with.
_NOT_GRPC = frozenset((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL))


@functools.cache
def pb() -> Any:
    """The generated OIP v2 message classes (untyped: `Any` at this one boundary)."""
    return importlib.import_module("inference_workers.grpc_gen.open_inference_grpc_pb2")


@functools.cache
def codec() -> Any:
    """`inference_workers.grpc_codec`: messages <-> the typed `InferRequest`, with the REST
    codec's checks and messages."""
    return importlib.import_module("inference_workers.grpc_codec")


class GrpcMetadataFetcher:
    """(model, version) -> the metadata document from an endpoint of one cluster, or None when the
    server does not know the model (NOT_FOUND)."""

    __slots__ = ("_channels", "_cluster", "_runtime", "_timeout")

    def __init__(
        self, runtime: Callable[[], Runtime], channels: UpstreamChannels, cluster: str, timeout: float
    ) -> None:
        self._runtime = runtime
        self._channels = channels
        self._cluster = cluster
        self._timeout = timeout

    async def __call__(self, model: str, version: str | None) -> dict[str, Any] | None:
        cluster = self._runtime().clusters.get(self._cluster)
        endpoint = cluster.endpoints.pick(None) if cluster is not None else None
        if endpoint is None:
            raise ServiceUnavailable(f"model metadata for '{model}': no endpoint in '{self._cluster}'")
        request = pb().ModelMetadataRequest(name=model, version=version or "").SerializeToString()
        channel = self._channels.get(endpoint.address)
        try:
            reply = await channel.unary_unary(METADATA_PATH)(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            if error.code() not in _NOT_GRPC or cluster is None:
                raise ServiceUnavailable(f"model metadata for '{model}': {error.code().name}") from None
            from gateway.runtime import metadata_fetcher  # the runtime imports the front door's peers

            return await metadata_fetcher(cluster)(model, version)
        message = pb().ModelMetadataResponse.FromString(reply)
        return {
            "name": message.name,
            "versions": list(message.versions),
            "platform": message.platform,
            "inputs": [_tensor(tensor) for tensor in message.inputs],
            "outputs": [_tensor(tensor) for tensor in message.outputs],
        }


def _tensor(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}

"""One gRPC call's decision: matched, filtered and assigned like an HTTP request.

The call becomes a `RequestContext` (method POST, path /SERVICE/METHOD, text metadata as headers,
the model from the request message for OIP v2 methods) and a `MeshExchange`: the protocol-neutral
request life the mesh servers already use (filters' request phase, experiment arm, endpoint pick,
response phase, and `finish` once). The relay (`gateway/grpc/relay.py`) only carries bytes.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING

import orjson

from gateway.core.context import RequestContext
from gateway.core.filters import Response
from gateway.grpc.message_fields import model_fields
from gateway.grpc.metadata import Metadata, split_metadata
from gateway.http.headers import request_id_of
from gateway.mesh.exchange import MeshExchange

if TYPE_CHECKING:
    from collections.abc import Iterable

    from gateway.runtime import Runtime

OIP_SERVICE = "inference.GRPCInferenceService"
# The OIP v2 methods whose request message names the model in fields 1 and 2.
MODEL_METHODS = frozenset(
    f"/{OIP_SERVICE}/{method}" for method in ("ModelInfer", "ModelMetadata", "ModelReady", "ModelStreamInfer")
)
# The unary methods of the OIP v2 service (Triton's extensions included); every other method, of
# this service or any other, is relayed as a stream, which carries any of the four call shapes.
UNARY_METHODS = frozenset(
    f"/{OIP_SERVICE}/{method}"
    for method in (
        "ServerLive",
        "ServerReady",
        "ServerMetadata",
        "ModelReady",
        "ModelMetadata",
        "ModelInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    )
)


def begin_call(
    runtime: Runtime,
    path: str,
    pairs: Iterable[tuple[str, str | bytes]],
    peer: str,
    first_message: bytes | None,
    tls_subject: str | None = None,
) -> tuple[MeshExchange, Metadata]:
    """The call's exchange, matched against the runtime's routes, and the client's binary metadata.
    Raises `BadRequest` for an OIP v2 request message that is not protobuf."""
    headers, binary = split_metadata(pairs)
    model = version = None
    if first_message is not None and path in MODEL_METHODS:
        model, version = model_fields(first_message)
    ctx = RequestContext(
        "POST",
        path,
        "",
        headers,
        client_ip(peer),
        monotonic(),
        request_id_of(headers),
        headers.get("host", ""),
    )
    ctx.model, ctx.model_version = model, version
    ctx.tls_subject = tls_subject
    match = runtime.router.match_named("POST", path, ctx.host, headers, model, version)
    route = match.payload if match is not None else None
    if route is not None:
        ctx.route = route.name
    return MeshExchange(runtime, ctx, route), binary


def client_ip(peer: str) -> str:
    """grpc's peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000") -> the address alone."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return rest


def answer_message(response: Response) -> str:
    """The details of a gRPC status for a filter's or the gateway's answer: the `error` of its JSON
    body, or the body's text."""
    body = response.body or b""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:200]
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])
    return body.decode(errors="replace")[:200]

"""What the batcher is given per cluster: a way to send one batch, and the cluster's size.

`send(path, body, content_type, headers)` posts one batched request to the cluster (through its
balancer, retries and timeouts: that is the caller's layer stack) and returns the answer as
`(status, headers, body)`, or as an `UpstreamAnswer` where the protocol says more: a name repeated,
or trailing metadata after the body (gRPC). It raises a `GatewayError` (BadGateway, ServiceUnavailable,
GatewayTimeout, ...) when no answer came; foreign exceptions are translated there, at the
transport boundary, though the batcher turns any other exception into BadGateway as a last resort.
`path` is the first member's request path: every member of a batch has the same one.

`get(path)` reads a path on one of the cluster's endpoints as `(status, body)`: the server metadata
(`GET /v2`) that says whether it takes binary tensors (see `extensions.py`). Without it, the
`upstream_binary_tensors` option is trusted as written.

`send_traced(path, body, content_type, headers, trace)`, where given, is `send` that records each
attempt as a client span of `trace` (a member's `ctx.trace`) and sends a `traceparent` naming it.

`endpoint_count()` sizes the in-flight limit: `max_inflight_batches_per_endpoint` batches per
endpoint; it is read whenever a batch finishes, so it can follow discovery and health.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.core.trace import RequestTrace

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """An answer with its head as (name, value) pairs, in order, names repeated where the upstream
    repeated them; binary gRPC metadata (`-bin` names) base64-encoded as on the wire."""

    status: int
    headers: Pairs
    body: bytes
    trailers: Pairs = ()
    """gRPC's trailing metadata (empty for HTTP)."""


UpstreamReply = tuple[int, Mapping[str, str], bytes] | UpstreamAnswer
SendBatch = Callable[[str, bytes, str, Mapping[str, str]], Awaitable[UpstreamReply]]
SendTraced = Callable[[str, bytes, str, Mapping[str, str], RequestTrace], Awaitable[UpstreamReply]]
GetPath = Callable[[str], Awaitable[tuple[int, bytes]]]


def _one_endpoint() -> int:
    return 1


@dataclass(frozen=True, slots=True)
class BatchUpstream:
    send: SendBatch
    endpoint_count: Callable[[], int] = _one_endpoint
    get: GetPath | None = None
    send_traced: SendTraced | None = None

"""Sending whole batches to a cluster: the batching layer's `send`.

A batch goes out like any request (the cluster's balancer, pools and outlier detection), and the
route's retry policy applies to the batch as a whole, within the cluster's retry budget. The
answer's headers come back whole: the batching layer decides which of them each member gets
(`plugins/batching/sender.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.cluster import ClusterRuntime
from gateway.core.filters import UpstreamReply
from gateway.core.trace import RequestTrace
from gateway.internal_client import send_to_cluster
from routing.resilience.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class ClusterBatchSender:
    """A `ClusterSender` (gateway/core/filters.py) with `send_traced` beside it."""

    send: Callable[[str, bytes, str, Mapping[str, str]], Awaitable[UpstreamReply]]
    endpoint_count: Callable[[], int]
    get: Callable[[str], Awaitable[tuple[int, bytes]]]
    send_traced: Callable[[str, bytes, str, Mapping[str, str], RequestTrace], Awaitable[UpstreamReply]]


def batch_upstream(cluster: ClusterRuntime, retry: RetryPolicy, timeout: float) -> ClusterBatchSender:
    """The batching layer's view of one cluster."""

    async def send(path: str, body: bytes, content_type: str, headers: Mapping[str, str]) -> UpstreamReply:
        reply = await send_to_cluster(
            cluster, "POST", path, [("content-type", content_type), *headers.items()], body, retry, timeout
        )
        return reply.status, reply.headers, reply.body

    async def send_traced(
        path: str, body: bytes, content_type: str, headers: Mapping[str, str], trace: RequestTrace
    ) -> UpstreamReply:
        sent = [("content-type", content_type), *headers.items()]
        reply = await send_to_cluster(cluster, "POST", path, sent, body, retry, timeout, trace)
        return reply.status, reply.headers, reply.body

    def endpoint_count() -> int:
        return max(1, len(cluster.endpoints.eligible))

    async def get(path: str) -> tuple[int, bytes]:
        reply = await send_to_cluster(cluster, "GET", path, (), b"", retry, timeout)
        return reply.status, reply.body

    return ClusterBatchSender(send, endpoint_count, get, send_traced)

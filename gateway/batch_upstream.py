"""Sending whole batches to a cluster: the batching layer's `send`.

A batch goes out like any request (the cluster's balancer, pools and outlier detection), and the
route's retry policy applies to the batch as a whole, within the cluster's retry budget.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.cluster import ClusterRuntime
from gateway.core.trace import RequestTrace
from gateway.internal_client import send_to_cluster
from plugins.batching import BatchUpstream, UpstreamReply
from routing.resilience.retry import RetryPolicy


def batch_upstream(cluster: ClusterRuntime, retry: RetryPolicy, timeout: float) -> BatchUpstream:
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

    return BatchUpstream(send, endpoint_count, get, send_traced)

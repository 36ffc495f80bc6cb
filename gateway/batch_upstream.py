"""Sending whole batches to a cluster: the batching layer's `send`, over the cluster's pools.

A batch goes out like any request: the cluster's balancer picks the endpoint, the route's retry
policy (and the cluster's retry budget) applies to the batch as a whole, outlier detection and load
reports see it. The answer is collected whole, since the batcher splits it by rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from time import monotonic

from gateway.cluster import ClusterRuntime
from gateway.core.errors import BadGateway, GatewayError, GatewayTimeout, Overloaded, ServiceUnavailable
from gateway.http.upstream import ResponseHead, UpstreamFailure
from plugins.batching import BatchUpstream, UpstreamReply
from routing.resilience.retry import RetryPolicy

_LOAD_HEADERS = (b"x-turnout-queue-depth", b"x-turnout-inflight")


class _Collector:
    """An exchange observer that gathers the whole answer into a future."""

    __slots__ = ("chunks", "future", "head")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[tuple[ResponseHead, bytes]] = loop.create_future()
        self.head: ResponseHead | None = None
        self.chunks: list[bytes] = []

    def on_head(self, head: ResponseHead) -> None:
        self.head = head

    def on_body(self, data: bytes) -> None:
        self.chunks.append(data)

    def on_end(self) -> None:
        if not self.future.done() and self.head is not None:
            self.future.set_result((self.head, b"".join(self.chunks)))

    def on_error(self, failure: UpstreamFailure) -> None:
        if not self.future.done():
            self.future.set_exception(failure)

    def on_data_processed(self) -> None:
        pass


def _error(failure: UpstreamFailure, cluster: str) -> GatewayError:
    message = f"cluster '{cluster}': {failure.message}"
    if failure.kind == "overloaded":
        return Overloaded(message)
    if failure.kind == "timeout":
        return GatewayTimeout(message)
    if failure.kind == "connect-failure":
        return ServiceUnavailable(message)
    return BadGateway(message)


def batch_upstream(cluster: ClusterRuntime, retry: RetryPolicy, timeout: float) -> BatchUpstream:
    """The batching layer's view of one cluster."""

    async def send(path: str, body: bytes, content_type: str, headers: Mapping[str, str]) -> UpstreamReply:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            endpoint = cluster.endpoints.pick(None)
            if endpoint is None:
                raise ServiceUnavailable(f"cluster '{cluster.name}' has no healthy endpoint")
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            head = (
                f"POST {path} HTTP/1.1\r\nhost: {endpoint.address}\r\ncontent-type: {content_type}\r\n"
                f"{extra}content-length: {len(body)}\r\n\r\n"
            ).encode("latin-1")
            cluster.endpoints.on_start(endpoint)
            started = monotonic()
            conn = None
            try:
                pool = cluster.pool_for(endpoint)
                conn = pool.take_idle() or await pool.acquire(cluster.breaker)
                collector = _Collector(loop)
                conn.send_request(head, body, False, timeout, collector)
                response, data = await collector.future
            except UpstreamFailure as failure:
                if conn is not None:
                    conn.close()
                cluster.endpoints.on_finish(endpoint)
                if failure.kind != "overloaded":
                    cluster.endpoints.on_failure(endpoint, monotonic())
                if (
                    attempt < retry.max_retries
                    and retry.should_retry(failure.kind, None)
                    and retry.budget.try_acquire_retry()
                ):
                    attempt = await _backoff(retry, attempt, cluster)
                    continue
                raise _error(failure, cluster.name) from None
            conn.release()
            cluster.endpoints.on_finish(endpoint)
            if response.status >= 500:
                cluster.endpoints.on_failure(endpoint, monotonic())
                if (
                    attempt < retry.max_retries
                    and retry.should_retry("", response.status)
                    and retry.budget.try_acquire_retry()
                ):
                    attempt = await _backoff(retry, attempt, cluster)
                    continue
            else:
                cluster.endpoints.on_success(endpoint, monotonic() - started, monotonic())
            reply_headers = {}
            for name, value in response.headers:
                lowered = name.lower()
                if lowered == _LOAD_HEADERS[0] and value.isdigit():
                    endpoint.queue_depth = int(value)
                elif lowered == _LOAD_HEADERS[1] and value.isdigit():
                    endpoint.reported_inflight = int(value)
                reply_headers[lowered.decode("latin-1")] = value.decode("latin-1")
            return response.status, reply_headers, data

    def endpoint_count() -> int:
        return max(1, len(cluster.endpoints.eligible))

    return BatchUpstream(send, endpoint_count)


async def _backoff(retry: RetryPolicy, attempt: int, cluster: ClusterRuntime) -> int:
    cluster.retries += 1
    try:
        await asyncio.sleep(retry.backoff(attempt))
    finally:
        retry.budget.release_retry()
    return attempt + 1

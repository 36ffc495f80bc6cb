"""Requests the gateway itself sends to a cluster: batches, shadow copies, smoke checks.

They go out like client requests: the cluster's balancer picks the endpoint, its pools carry them,
outlier detection and load reports see them. The answer is collected whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from time import monotonic

from gateway.cluster import ClusterRuntime
from gateway.core.errors import BadGateway, GatewayError, GatewayTimeout, Overloaded, ServiceUnavailable
from gateway.core.trace import RequestTrace
from gateway.http.upstream import ResponseHead, UpstreamFailure
from routing.endpoints import Endpoint
from routing.resilience.retry import RetryPolicy

_QUEUE_DEPTH = b"x-turnout-queue-depth"
_INFLIGHT = b"x-turnout-inflight"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    latency_s: float


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


def failure_error(failure: UpstreamFailure, cluster: str) -> GatewayError:
    """The caller-facing error for a failed upstream exchange."""
    message = f"cluster '{cluster}': {failure.message}"
    if failure.kind == "overloaded":
        return Overloaded(message)
    if failure.kind == "timeout":
        return GatewayTimeout(message)
    if failure.kind == "connect-failure":
        return ServiceUnavailable(message)
    return BadGateway(message)


async def send_to_cluster(
    cluster: ClusterRuntime,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    retry: RetryPolicy,
    timeout: float,
    trace: RequestTrace | None = None,
) -> Reply:
    """One request to the cluster, retried by `retry` within the cluster's retry budget. Raises a
    GatewayError when no answer came. With a `trace`, each attempt is a client span of it and
    sends a `traceparent` naming that span."""
    attempt = 0
    failed: Endpoint | None = None  # a retry goes elsewhere when it can
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    while True:
        endpoint = cluster.endpoints.pick(None, failed)
        if endpoint is None:
            raise ServiceUnavailable(f"cluster '{cluster.name}' has no healthy endpoint")
        span = trace.attempt(endpoint.address, attempt) if trace is not None else None
        context = f"traceparent: {span.traceparent}\r\n" if span is not None else ""
        head = (
            f"{method} {target} HTTP/1.1\r\nhost: {endpoint.address}\r\n{extra}{context}"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        cluster.endpoints.on_start(endpoint)
        started = monotonic()
        conn = None
        try:
            pool = cluster.pool_for(endpoint)
            conn = pool.take_idle() or await pool.acquire(cluster.breaker)
            collector = _Collector(asyncio.get_running_loop())
            conn.send_request(head, body, method == "HEAD", timeout, collector)
            response, data = await collector.future
        except UpstreamFailure as failure:
            if span is not None:
                span.fail(failure.message)
                span.end()
            if conn is not None:
                conn.close()
            cluster.endpoints.on_finish(endpoint)
            if failure.kind != "overloaded":
                cluster.endpoints.on_failure(endpoint, monotonic())
                failed = endpoint
            if _may_retry(retry, attempt, failure.kind, None):
                attempt = await _backoff(retry, attempt, cluster)
                continue
            raise failure_error(failure, cluster.name) from None
        latency = monotonic() - started
        if span is not None:
            span.set_status(response.status)
            span.end()
        if response.status >= 500:
            conn.close()  # uvicorn-based servers close after an exception without saying so
        else:
            conn.release()
        cluster.endpoints.on_finish(endpoint)
        model_errors = cluster.model_errors
        if response.status >= 500 and (
            model_errors is None or not model_errors.is_model_error(response.status, data)
        ):
            cluster.endpoints.on_failure(endpoint, monotonic())
            failed = endpoint
            if _may_retry(retry, attempt, "", response.status):
                attempt = await _backoff(retry, attempt, cluster)
                continue
        else:
            cluster.endpoints.on_success(endpoint, latency, monotonic())
        reply_headers: dict[str, str] = {}
        for name, value in response.headers:
            lowered = name.lower()
            if lowered == _QUEUE_DEPTH and value.isdigit():
                endpoint.queue_depth = int(value)
            elif lowered == _INFLIGHT and value.isdigit():
                endpoint.reported_inflight = int(value)
            reply_headers[lowered.decode("latin-1")] = value.decode("latin-1")
        return Reply(response.status, reply_headers, data, latency)


def _may_retry(retry: RetryPolicy, attempt: int, kind: str, status: int | None) -> bool:
    return (
        attempt < retry.max_retries and retry.should_retry(kind, status) and retry.budget.try_acquire_retry()
    )


async def _backoff(retry: RetryPolicy, attempt: int, cluster: ClusterRuntime) -> int:
    cluster.retries += 1
    try:
        await asyncio.sleep(retry.backoff(attempt))
    finally:
        retry.budget.release_retry()
    return attempt + 1

"""The data path: one coroutine per request, from parsed head to the access-log line.

exchange (parsed by the listener)
  -> RequestContext
  -> router.match                      404 when nothing matches
  -> circuit breaker, retry budget     503 + x-turnout-overloaded when full
  -> pick endpoint -> pooled connection -> request head + body
  -> response head: retry on 502/503/504 or connect failure/reset (policy + budget), never after
     a response byte reached the client
  -> head and body relayed as they arrive, with backpressure both ways
  -> metrics and access log (always)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING

from gateway.core.context import RequestContext
from gateway.core.errors import (
    BadGateway,
    GatewayError,
    GatewayTimeout,
    Overloaded,
    PayloadTooLarge,
    ServiceUnavailable,
    error_body,
)
from gateway.http.exchange import ClientGone, HttpExchange
from gateway.http.headers import build_request_head, request_id_of, response_headers
from gateway.http.upstream import BodySink, ResponseHead, UpstreamConnection, UpstreamFailure
from routing.endpoints import Endpoint

if TYPE_CHECKING:
    from gateway.route import CompiledRoute
    from gateway.runtime import Runtime

_NOT_FOUND_BODY = error_body(404, "no route matches this request", "not_found")
_QUEUE_DEPTH = b"x-turnout-queue-depth"
_INFLIGHT = b"x-turnout-inflight"
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class _ClientSink(BodySink):
    """Relays upstream body chunks straight to the client; closes the upstream if the client left."""

    __slots__ = ("conn", "ctx", "exchange")

    def __init__(self, exchange: HttpExchange, conn: UpstreamConnection, ctx: RequestContext) -> None:
        self.exchange = exchange
        self.conn = conn
        self.ctx = ctx

    def on_body(self, data: bytes) -> None:
        if self.exchange.conn.closed:
            self.conn.close()
            return
        self.exchange.send_body(data)

    def on_end(self) -> None:
        pass


def _failure_error(failure: UpstreamFailure, cluster: str) -> GatewayError:
    if failure.kind == "overloaded":
        return Overloaded(f"cluster '{cluster}': {failure.message}")
    if failure.kind == "timeout":
        return GatewayTimeout(f"cluster '{cluster}': {failure.message}")
    if failure.kind == "connect-failure":
        return ServiceUnavailable(f"cluster '{cluster}': {failure.message}")
    return BadGateway(f"cluster '{cluster}': {failure.message}")


class Proxy:
    """The request handler given to the listener. `runtime` is read once per request, so a reload that
    swaps it never changes a request in flight."""

    def __init__(self, runtime: Callable[[], Runtime], scheme: bytes = b"http") -> None:
        self._runtime = runtime
        self._scheme = scheme

    async def handle(self, exchange: HttpExchange) -> None:
        runtime = self._runtime()
        headers = exchange.headers
        ctx = RequestContext(
            exchange.method, exchange.path, exchange.query, headers, exchange.client_ip, monotonic()
        )
        ctx.request_id = request_id_of(headers)
        ctx.host = headers.get("host", "")
        match = runtime.router.match(exchange.method, exchange.path, ctx.host, headers)
        if match is None:
            ctx.status = 404
            exchange.respond(404, _NOT_FOUND_BODY, headers=((b"x-request-id", ctx.request_id.encode()),))
            runtime.metrics.unrouted.inc()
            runtime.log_request(ctx, None, monotonic() - ctx.started)
            return
        route: CompiledRoute = match.payload
        ctx.route = route.name
        ctx.cluster = route.cluster.name
        ctx.model = match.model
        ctx.model_version = match.version
        cluster = route.cluster
        breaker = cluster.breaker
        budget = cluster.retry.budget
        try:
            if not breaker.try_acquire():
                cluster.breaker_rejections += 1
                raise Overloaded(f"cluster '{cluster.name}' is at its limit of concurrent requests")
            budget.request_started()
            try:
                await self._forward_with_retries(route, ctx, exchange)
            finally:
                budget.request_finished()
                breaker.release()
        except GatewayError as error:
            ctx.status = error.status
            ctx.error = error.message
            extra = [(b"x-request-id", ctx.request_id.encode())]
            extra.extend((k.encode(), v.encode()) for k, v in error.headers.items())
            exchange.respond(error.status, error.body(), headers=extra)
        except (ClientGone, ConnectionResetError):
            ctx.status = 499
            ctx.error = "client closed the connection"
            exchange.abort()
        except asyncio.CancelledError:
            exchange.abort()
            raise
        finally:
            ctx.bytes_out = exchange.response_bytes
            total = monotonic() - ctx.started
            route.metrics.record(ctx, total)
            runtime.log_request(ctx, route, total)

    async def _forward_with_retries(
        self, route: CompiledRoute, ctx: RequestContext, exchange: HttpExchange
    ) -> None:
        cluster = route.cluster
        endpoints = cluster.endpoints
        body: bytes | None
        if exchange.body_complete:
            body = exchange.take_complete_body()
        elif exchange.content_length is not None:
            body = await exchange.read_body()
        else:
            body = None  # chunked: streamed, so a retry is possible only before the upstream saw it
        ctx.bytes_in = len(body) if body is not None else 0
        target = exchange.path if route.rewrite is None else route.rewrite.apply(exchange.path)
        if exchange.query:
            target = f"{target}?{exchange.query}"
        head_bytes: bytes | None = None
        attempt = 0
        while True:
            endpoint = endpoints.pick(ctx)
            if endpoint is None:
                raise ServiceUnavailable(f"cluster '{cluster.name}' has no healthy endpoint")
            ctx.endpoint = endpoint.address
            if head_bytes is None:
                head_bytes = build_request_head(
                    exchange.method,
                    target,
                    exchange.raw_headers,
                    exchange.headers,
                    route.request_headers,
                    ctx.client_ip,
                    ctx.request_id,
                    self._scheme,
                    len(body) if body is not None else None,
                    endpoint.address,
                )
            endpoints.on_start(endpoint)
            started = monotonic()
            conn: UpstreamConnection | None = None
            try:
                pool = cluster.pool_for(endpoint)
                conn = pool.take_idle() or await pool.acquire(cluster.breaker)
                conn.send_request(head_bytes, body, exchange.method == "HEAD", route.timeout)
                if body is None:
                    await self._pump_request_body(exchange, conn, ctx)
                head = await conn.head_waiter
            except UpstreamFailure as failure:
                endpoints.on_finish(endpoint)
                if failure.kind == "overloaded":  # our own limit, not the endpoint's fault
                    raise _failure_error(failure, cluster.name) from None
                endpoints.on_failure(endpoint, monotonic())
                if conn is not None:
                    conn.close()
                if self._may_retry(route, attempt, failure.kind, None, body):
                    attempt = await self._before_retry(route, ctx, attempt, budgeted=True)
                    continue
                # A pooled connection the upstream closed while idle: one fresh try for idempotent
                # requests, whatever the policy (the upstream never saw the request).
                if (
                    failure.kind == "reset"
                    and conn is not None
                    and conn.reused
                    and attempt == 0
                    and body is not None
                    and exchange.method in _IDEMPOTENT
                ):
                    attempt = await self._before_retry(route, ctx, attempt, budgeted=False)
                    continue
                raise _failure_error(failure, cluster.name) from None
            ctx.upstream_latency = monotonic() - started
            if head.status >= 500:
                endpoints.on_failure(endpoint, monotonic())
                if self._may_retry(route, attempt, "", head.status, body):
                    endpoints.on_finish(endpoint)
                    conn.close()
                    attempt = await self._before_retry(route, ctx, attempt, budgeted=True)
                    continue
            else:
                endpoints.on_success(endpoint, ctx.upstream_latency, monotonic())
            try:
                if self._relay_head(route, ctx, exchange, conn, head, endpoint):
                    await self._relay_stream(ctx, exchange, conn)
            finally:
                endpoints.on_finish(endpoint)
            return

    def _may_retry(
        self, route: CompiledRoute, attempt: int, kind: str, status: int | None, body: bytes | None
    ) -> bool:
        retry = route.retry
        if attempt >= retry.max_retries or body is None or not retry.should_retry(kind, status):
            return False
        return route.cluster.retry.budget.try_acquire_retry()

    async def _before_retry(
        self, route: CompiledRoute, ctx: RequestContext, attempt: int, budgeted: bool
    ) -> int:
        """Wait out the backoff for the next attempt; returns the new attempt number."""
        cluster = route.cluster
        ctx.retries = attempt + 1
        cluster.retries += 1
        try:
            delay = route.retry.backoff(attempt)
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            if budgeted:
                cluster.retry.budget.release_retry()
        return attempt + 1

    async def _pump_request_body(
        self, exchange: HttpExchange, conn: UpstreamConnection, ctx: RequestContext
    ) -> None:
        """Stream a chunked request body upstream as it arrives."""
        try:
            while chunk := await exchange.read_chunk():
                ctx.bytes_in += len(chunk)
                conn.send_body_chunk(chunk)
        except PayloadTooLarge:
            conn.close()
            raise
        except ConnectionResetError:
            conn.close()
            raise ClientGone("client closed the connection while sending the body") from None
        conn.send_body_chunk(b"")

    @staticmethod
    def _relay_head(
        route: CompiledRoute,
        ctx: RequestContext,
        exchange: HttpExchange,
        conn: UpstreamConnection,
        head: ResponseHead,
        endpoint: Endpoint,
    ) -> bool:
        """Send the response head, and the whole answer when it is already here (the common case,
        done without another await). True when a body is still to be streamed."""
        ctx.status = head.status
        if route.cluster.protocol != "http":
            _note_load_report(head, endpoint)
        exchange.send_head(
            head.status,
            response_headers(head.headers, route.response_headers, ctx.request_id.encode()),
            head.content_length,
            head.reason or None,
        )
        if conn.response_complete and not conn.closed:
            conn.stream_body(_ClientSink(exchange, conn, ctx))
            exchange.end()
            conn.release()
            return False
        return True

    @staticmethod
    async def _relay_stream(ctx: RequestContext, exchange: HttpExchange, conn: UpstreamConnection) -> None:
        """Relay a body as it arrives, pausing the upstream while the client is slower."""
        exchange.flush()
        exchange.set_flow_control(conn.pause_reading, conn.resume_reading)
        try:
            await conn.stream_body(_ClientSink(exchange, conn, ctx))
        except UpstreamFailure as failure:
            ctx.error = failure.message
            exchange.abort()
            conn.close()
            return
        finally:
            exchange.set_flow_control(None, None)
        if exchange.conn.closed:
            ctx.error = "client closed the connection"
            conn.close()
            exchange.abort()
            return
        exchange.end()
        conn.release()


def _note_load_report(head: ResponseHead, endpoint: Endpoint) -> None:
    """Workers report their queue depth and in-flight count in headers: remember them."""
    for name, value in head.headers:
        if len(name) == 21 and name.lower() == _QUEUE_DEPTH:
            if value.isdigit():
                endpoint.queue_depth = int(value)
        elif len(name) == 18 and name.lower() == _INFLIGHT and value.isdigit():
            endpoint.reported_inflight = int(value)

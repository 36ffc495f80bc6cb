"""The upstream call of one request: admission, endpoint choice, retries, and the answer's bytes.

An `UpstreamAttempt` is made once the backend is chosen and lives until the request finishes. It
owns what the call to the cluster needs and nothing else (Tower's retry and limit layers, as one
object per request):

    admit()       the cluster's circuit breaker and retry budget (503 x-turnout-overloaded when full)
    send()        pick an endpoint (unit affinity first, then the balancer, avoiding the last failure),
                  take an idle pooled connection or open one, write the head and body
    on_head       charge or credit the endpoint; retry a 5xx by policy and budget; else hand the head
                  to the response phase (gateway/response_phase.py), which streams or buffers;
                  a small 5xx that may be a model's error is held until its body says (the
                  cluster's `model_errors`: a model's error is relayed, never retried or charged)
    on_body       relayed to the client as it arrives, or buffered for the response filters; for a
                  request a filter watches (`RequestContext.watch_answer`), also copied aside
    on_end        connection back to the pool; the request finishes (or its filters run); the copy
                  goes to the watchers once the client has the answer
    on_error      retry by policy and budget (a reused connection reset before answering gets one
                  free try for idempotent requests); else 502/503/504; a started answer is cut
    release()     breaker and budget given back, from the request's finish()

The endpoint is charged only for what it did: a 5xx, a reset, a timeout, a malformed answer. When
the gateway drops an exchange for its own reasons (a response filter that failed, a bug, a retry
decided on the head), `drop` closes the connection without a word to the endpoint's health.
Every callback from the upstream connection contains its own exceptions (`ProxyRequest.crash`): one
escaping into the parser would be reported as a malformed answer.

On a traced request (`ctx.trace`) each attempt is a client span from the endpoint's choice to the
end of its exchange, and the head it sends carries a traceparent naming that span (the client's own
traceparent is not forwarded then: the attempt's continues its trace).
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING

from gateway.core.context import ANSWER_COPY_MAX_BYTES
from gateway.core.errors import GatewayError, Overloaded, ServiceUnavailable
from gateway.core.filters import Response
from gateway.http.headers import filterable_headers
from gateway.http.upstream import ResponseHead, UpstreamConnection, UpstreamFailure
from gateway.internal_client import failure_error
from gateway.response_phase import (
    AnswerWatcher,
    is_event_stream,
    on_upstream_head,
    respond_through_filters,
    show_watchers,
)
from gateway.upstream_request import upstream_head
from routing.affinity import affinity_pick

if TYPE_CHECKING:
    from gateway.cluster import ClusterRuntime
    from gateway.core.trace import AttemptSpan
    from gateway.http.pool import EndpointPool
    from gateway.proxy import ProxyRequest
    from routing.endpoints import Endpoint
    from routing.resilience.retry import RetryPolicy

_QUEUE_DEPTH = b"x-turnout-queue-depth"
_INFLIGHT = b"x-turnout-inflight"
# A connection the upstream closed while it sat idle in the pool: the request never reached the
# upstream, so idempotent requests get one fresh try whatever the retry policy says.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class UpstreamAttempt:
    """One request's call to its cluster, retries included (the upstream connection's observer)."""

    __slots__ = (
        "admitted",
        "affinity_key",
        "attempt",
        "body",
        "buffer",
        "cluster",
        "conn",
        "copy",
        "copy_bytes",
        "copy_head",
        "copy_watchers",
        "endpoint",
        "failed_endpoint",
        "flow_controlled",
        "head_bytes",
        "held_error",
        "relaying",
        "request",
        "retry",
        "sent_at",
        "span",
        "streaming_body",
        "timeout",
    )

    def __init__(
        self,
        request: ProxyRequest,
        cluster: ClusterRuntime,
        retry: RetryPolicy,
        timeout: float,
        affinity_key: str | None,
    ) -> None:
        self.request = request
        self.cluster = cluster
        self.retry = retry
        self.timeout = timeout
        self.affinity_key = affinity_key
        """Set when the experiment pins each unit to one endpoint of its arm's cluster."""
        self.admitted = False
        self.attempt = 0
        self.body: bytes | None = None
        """The whole request body; None while it streams upstream (chunked, or longer than
        `RETRY_BUFFER_BYTES`) or is not read yet. None also means no retry: part of it may be sent."""
        self.streaming_body = False
        self.head_bytes: bytes | None = None
        """The request head as sent, built once and reused by retries."""
        self.endpoint: Endpoint | None = None
        self.conn: UpstreamConnection | None = None
        self.failed_endpoint: Endpoint | None = None
        """Where the last attempt failed: a retry goes elsewhere when it can."""
        self.sent_at = 0.0
        self.buffer: list[bytes] | None = None
        """The answer's body so far, when the response phase holds it back (set by on_upstream_head)."""
        self.relaying = False
        """The answer's head went to the client: from now on an upstream failure cuts the connection."""
        self.flow_controlled = False
        self.held_error: ResponseHead | None = None
        """A 5xx head held back until its body says whether the model raised (`model_errors`)."""
        self.span: AttemptSpan | None = None
        """The attempt in flight, on a traced request."""
        self.copy: list[bytes] | None = None
        """A watched answer's bytes as they go to the client (`_copy_for_watchers`)."""
        self.copy_bytes = 0
        self.copy_head: ResponseHead | None = None
        self.copy_watchers: list[AnswerWatcher] | None = None
        """Who sees the copy once the answer is complete (taken from `ctx.answer_watchers`)."""

    # ----- admission -----

    def admit(self) -> GatewayError | None:
        """Take a place in the cluster's breaker and budget; the error to answer when there is none."""
        cluster = self.cluster
        if not cluster.breaker.try_acquire():
            cluster.breaker_rejections += 1
            return Overloaded(f"cluster '{cluster.name}' is at its limit of concurrent requests")
        cluster.retry.budget.request_started()
        self.admitted = True
        return None

    def release(self) -> None:
        """Give back the place `admit` took (the request's finish calls this, once)."""
        if self.admitted:
            self.admitted = False
            self.cluster.retry.budget.request_finished()
            self.cluster.breaker.release()
        span = self.span
        if span is not None:  # the request ended with an attempt in flight (the client left)
            self.span = None
            span.end()

    # ----- sending -----

    def send(self) -> None:
        """One attempt: pick an endpoint and send the request on an idle connection (or a new one)."""
        cluster = self.cluster
        request = self.request
        endpoint = None
        if self.affinity_key is not None:
            endpoint = affinity_pick(cluster.endpoints.eligible, self.affinity_key)
        if endpoint is None:
            endpoint = cluster.endpoints.pick(request.ctx, self.failed_endpoint)
        if endpoint is None:
            request.fail(ServiceUnavailable(f"cluster '{cluster.name}' has no healthy endpoint"))
            return
        self.endpoint = endpoint
        ctx = request.ctx
        ctx.endpoint = endpoint.address
        trace = ctx.trace
        if self.head_bytes is None:
            route = request.route
            assert route is not None
            if trace is not None and "traceparent" in ctx.headers:  # the attempt's replaces it
                ctx.headers = {k: v for k, v in ctx.headers.items() if k != "traceparent"}
            body = self.body
            # A streamed body keeps the client's framing: its Content-Length, or chunked.
            length = len(body) if body is not None else request.exchange.content_length
            self.head_bytes = upstream_head(
                request.exchange, ctx, route, request.proxy.proto_line, length, endpoint.address
            )
        if trace is not None:
            self.span = trace.attempt(endpoint.address, self.attempt)
        cluster.endpoints.on_start(endpoint)
        pool = cluster.pool_for(endpoint)
        conn = pool.take_idle()
        if conn is None:
            request.spawn(self._connect_then_send(pool))
        else:
            self._send_on(conn)

    async def _connect_then_send(self, pool: EndpointPool) -> None:
        try:
            conn = await pool.acquire(self.cluster.breaker)
        except UpstreamFailure as failure:
            self.on_error(failure)
            return
        self._send_on(conn)

    def _send_on(self, conn: UpstreamConnection) -> None:
        head = self.head_bytes
        assert head is not None
        request = self.request
        self.conn = conn
        self.sent_at = monotonic()
        span = self.span
        if span is not None:
            head = with_traceparent(head, span.traceparent)
        conn.send_request(head, self.body, request.exchange.method == "HEAD", self.timeout, self)
        if self.streaming_body:
            conn.begin_streamed_body(chunked=request.exchange.content_length is None)
            request.spawn(self._pump_body(conn))

    async def _pump_body(self, conn: UpstreamConnection) -> None:
        """Stream the request body upstream as it arrives (chunked, or beyond the retry buffer).
        Reading waits for the client's bytes; the listener stops reading the client while what it
        holds of the body is past its high-water mark, so a slow upstream never grows it."""
        request = self.request
        try:
            while chunk := await request.exchange.read_chunk():
                request.ctx.bytes_in += len(chunk)
                conn.send_body_chunk(chunk)
                await conn.drained()
        except GatewayError as error:  # the client's body broke off (too large): not the endpoint's fault
            self._give_up(conn)
            request.fail(error)
            return
        except ConnectionResetError:
            self._give_up(conn)
            request.client_gone()
            return
        conn.send_body_chunk(b"")

    def _give_up(self, conn: UpstreamConnection) -> None:
        """The request body cannot be sent whole: end the exchange without charging the endpoint."""
        if self.conn is conn:
            self.drop()
        else:  # the upstream already answered; the connection must not be reused half-written
            conn.close()

    # ----- the upstream's answer (ExchangeObserver) -----

    def on_head(self, head: ResponseHead) -> None:
        try:
            self._on_head(head)
        except Exception as exc:
            self.request.crash(exc)

    def _on_head(self, head: ResponseHead) -> None:
        request = self.request
        ctx = request.ctx
        cluster = self.cluster
        endpoint = self.endpoint
        assert endpoint is not None
        now = monotonic()
        ctx.upstream_latency = now - self.sent_at
        if self.span is not None:
            self.span.set_status(head.status)
        model_errors = cluster.model_errors
        if model_errors is not None and model_errors.may_be_model_error(head.status, head.content_length):
            self.held_error = head  # charged, retried or relayed once its body is read (`_on_end`)
            self.buffer = []
            return
        if head.status >= 500:
            cluster.endpoints.on_failure(endpoint, now)
            if self._may_retry("", head.status):
                self.failed_endpoint = endpoint
                self.drop()
                self._retry(budgeted=True)
                return
        else:
            cluster.endpoints.on_success(endpoint, ctx.upstream_latency, now)
        if cluster.protocol != "http":
            _note_load_report(head, endpoint)
        ctx.status = head.status
        if request.body_meter is not None:
            request.body_meter.on_head(head.headers, head.content_length)
        if ctx.answer_watchers is not None:
            self._copy_for_watchers(head)
        on_upstream_head(request, self, head)

    def on_body(self, data: bytes) -> None:
        try:
            buffer = self.buffer
            exchange = self.request.exchange
            if buffer is not None:
                buffer.append(data)
            elif exchange.conn.closed:
                conn = self.conn
                if conn is not None:  # the client left: stop reading an answer nobody will see
                    conn.close()
            else:
                meter = self.request.body_meter
                if meter is not None:  # an OpenAI answer: timings and usage, maybe a chunk removed
                    data = meter.feed(data)
                    if not data:
                        return
                exchange.send_body(data)
            copy = self.copy
            if copy is not None:
                self.copy_bytes += len(data)
                if self.copy_bytes <= ANSWER_COPY_MAX_BYTES:
                    copy.append(data)  # a reference: the parser hands each packet's bytes over
                else:  # longer than its Content-Length said, or chunked: too long to keep
                    copy.clear()
                    self.copy = None
        except Exception as exc:
            self.request.crash(exc)

    def on_data_processed(self) -> None:
        """A packet was relayed and the answer goes on: flush it, and from now on let a slow client
        pause the upstream. (Most answers end within their first packet and never get here.)"""
        if self.relaying:
            try:
                exchange = self.request.exchange
                exchange.flush()  # a stream's first bytes must not wait for the next packet
                conn = self.conn
                if not self.flow_controlled and conn is not None:
                    self.flow_controlled = True
                    exchange.set_flow_control(conn.pause_reading, conn.resume_reading)
            except Exception as exc:
                self.request.crash(exc)

    def on_end(self) -> None:
        try:
            self._on_end()
        except Exception as exc:
            self.request.crash(exc)

    def _on_end(self) -> None:
        if self.held_error is not None:
            self._decide_held_error(self.held_error)
            return
        request = self.request
        conn = self.conn
        self.conn = None
        buffer = self.buffer
        if buffer is not None:
            self.buffer = None
            if conn is not None:
                conn.release()
            self._finish_attempt()
            respond_through_filters(request, b"".join(buffer))
            if self.copy_watchers is not None:
                self._show_copy()
            return
        if self.flow_controlled:
            request.exchange.set_flow_control(None, None)
        request.exchange.end()
        if conn is not None:
            conn.release()
        self._finish_attempt()
        if self.copy_watchers is not None:
            self._show_copy()
        request.finish()

    def on_error(self, failure: UpstreamFailure) -> None:
        try:
            self._on_error(failure)
        except Exception as exc:
            self.request.crash(exc)

    def _on_error(self, failure: UpstreamFailure) -> None:
        request = self.request
        conn = self.conn
        self.conn = None
        if self.held_error is not None:  # a held 5xx cut short: a failure like any other, nothing sent yet
            self.held_error = None
            self.buffer = None
        if self.copy_watchers is not None:  # a retry's answer is copied afresh for the watchers
            request.ctx.answer_watchers, self.copy_watchers = self.copy_watchers, None
            self.copy = self.copy_head = None
        if conn is not None:
            conn.close()
        endpoint = self.endpoint
        if self.span is not None:
            self.span.fail(failure.message)
        self._finish_attempt()
        cluster = self.cluster
        if self.relaying:  # bytes reached the client: nothing to do but cut the connection
            if self.flow_controlled:
                request.exchange.set_flow_control(None, None)
            request.ctx.error = failure.message
            request.exchange.abort()
            request.finish()
            return
        if failure.kind == "overloaded":  # our own limit, not the endpoint's fault
            request.fail(failure_error(failure, cluster.name))
            return
        if endpoint is not None:
            cluster.endpoints.on_failure(endpoint, monotonic())
            self.failed_endpoint = endpoint
        if self._may_retry(failure.kind, None):
            self._retry(budgeted=True)
        elif (
            failure.kind == "reset"
            and conn is not None
            and conn.reused
            and self.attempt == 0
            and self.body is not None
            and request.exchange.method in _IDEMPOTENT
        ):
            self._retry(budgeted=False)
        else:
            request.fail(failure_error(failure, cluster.name))

    def _decide_held_error(self, head: ResponseHead) -> None:
        """A held 5xx is complete: a model's error is the request's, relayed as is; anything else
        is the endpoint's failure, retried by policy like any 5xx."""
        self.held_error = None
        buffer, self.buffer = self.buffer or [], None
        body = b"".join(buffer)
        request = self.request
        cluster = self.cluster
        endpoint = self.endpoint
        policy = cluster.model_errors
        assert endpoint is not None and policy is not None
        now = monotonic()
        if policy.is_model_error(head.status, body):
            cluster.endpoints.on_success(endpoint, request.ctx.upstream_latency, now)
        else:
            cluster.endpoints.on_failure(endpoint, now)
            if self._may_retry("", head.status):
                self.failed_endpoint = endpoint
                self.drop()  # as for any retried 5xx: that exchange's connection is not reused
                self._retry(budgeted=True)
                return
        if cluster.protocol != "http":
            _note_load_report(head, endpoint)
        request.ctx.status = head.status
        if request.ctx.answer_watchers is not None:
            self._copy_for_watchers(head)
        on_upstream_head(request, self, head)  # relayed, or held for the filters, as any answer
        conn = self.conn
        if request.upstream is self and conn is not None:  # still this exchange's to finish
            if body:
                self.on_body(body)
            # Not back to the pool: servers on uvicorn close the connection after an exception
            # in the model without saying so, and the next request on it would fail.
            self.conn = None
            conn.detach()
            conn.close()
            self._on_end()

    # ----- watched answers -----

    def _copy_for_watchers(self, head: ResponseHead) -> None:
        """A filter watches this answer (`ctx.watch_answer`). When no response filter reads its body,
        it is not held back for the watchers: it streams to the client as any answer, and its bytes
        are kept aside as they pass (`on_body`), unless its length is over the bound. An answer the
        response phase holds anyway (filters that read its body or await) is shown as it is written."""
        request = self.request
        route = request.route
        assert route is not None
        ctx = request.ctx
        chain = route.filters
        if chain.needs_response_body or not chain.response_is_sync or request.buffer_response:
            return  # held back anyway: shown as written (response_phase.write_response)
        if is_event_stream(head.headers):
            return
        self.copy_watchers, ctx.answer_watchers = ctx.answer_watchers, None
        self.copy_head = head
        length = head.content_length
        if length is None or length <= ANSWER_COPY_MAX_BYTES:
            self.copy = []
            self.copy_bytes = 0

    def _show_copy(self) -> None:
        """The client has the answer: the watchers get the copy (`body` None when it was too long)."""
        watchers, head, copy = self.copy_watchers, self.copy_head, self.copy
        self.copy_watchers = self.copy_head = self.copy = None
        assert watchers is not None and head is not None
        ctx = self.request.ctx
        body = None if copy is None else b"".join(copy)
        headers = filterable_headers(head.headers)
        show_watchers(ctx, watchers, Response(ctx.status, headers, body))

    # ----- retries and the end of an exchange -----

    def _may_retry(self, kind: str, status: int | None) -> bool:
        retry = self.retry
        if self.attempt >= retry.max_retries or self.body is None or not retry.should_retry(kind, status):
            return False
        return self.cluster.retry.budget.try_acquire_retry()

    def drop(self) -> None:
        """Give up the exchange in flight without charging its endpoint (the answer was fine, or
        the gateway failed): the connection is closed, since its answer was not read to the end."""
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.detach()
            conn.close()
        self._finish_attempt()
        if self.flow_controlled:
            self.flow_controlled = False
            self.request.exchange.set_flow_control(None, None)

    def _finish_attempt(self) -> None:
        endpoint = self.endpoint
        if endpoint is not None:
            self.cluster.endpoints.on_finish(endpoint)
        self.endpoint = None
        span = self.span
        if span is not None:
            self.span = None
            span.end()

    def _retry(self, budgeted: bool) -> None:
        request = self.request
        delay = self.retry.backoff(self.attempt)
        self.attempt += 1
        request.ctx.retries = self.attempt
        self.cluster.retries += 1
        budget = self.cluster.retry.budget

        def again() -> None:
            if budgeted:
                budget.release_retry()
            try:
                if request.exchange.client_connected:
                    self.send()
                else:
                    request.client_gone()
            except Exception as exc:  # a timer callback: nobody else would end the request
                request.crash(exc)

        asyncio.get_running_loop().call_later(delay, again)


def with_traceparent(head: bytes, traceparent: str) -> bytes:
    """The request head with a traceparent line after its request line."""
    line_end = head.index(b"\r\n") + 2
    return head[:line_end] + b"traceparent: " + traceparent.encode("ascii") + b"\r\n" + head[line_end:]


def _note_load_report(head: ResponseHead, endpoint: Endpoint) -> None:
    """Workers report their queue depth and in-flight count in headers: remember them."""
    for name, value in head.headers:
        if len(name) == 21 and name.lower() == _QUEUE_DEPTH:
            if value.isdigit():
                endpoint.queue_depth = int(value)
        elif len(name) == 18 and name.lower() == _INFLIGHT and value.isdigit():
            endpoint.reported_inflight = int(value)

"""The data path: each request is a small state machine driven by the listener's and the upstream
connection's callbacks, like nginx's, rather than a coroutine per request.

    head parsed -> RequestContext -> router.match (404) -> request filters (may answer)
      -> circuit breaker and retry budget (503 + x-turnout-overloaded)
      -> pick endpoint -> idle pooled connection -> request head + body written
      -> on_head: retry on 5xx by policy and budget, never after a byte reached the client;
         response filters; head relayed
      -> on_body: relayed as it arrives (the client's pace pauses the upstream)
      -> on_end: answer complete -> metrics, access log, filter logging phase (always)

A request that needs to wait for something other than the upstream's answer (a body still arriving,
an async filter, a new connection, a backoff) continues in a task and rejoins the same machine;
everything else runs inside the callbacks, so a typical proxied request costs no task switch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from time import monotonic
from typing import TYPE_CHECKING, Any, cast

import orjson

from gateway.core.context import RequestContext
from gateway.core.errors import (
    GatewayError,
    Overloaded,
    ServiceUnavailable,
    error_body,
)
from gateway.core.filters import FilterError, Response
from gateway.core.json_bounds import JsonTooComplex, loads
from gateway.filter_chain import ResponsePending
from gateway.http.exchange import HttpExchange
from gateway.http.headers import (
    build_request_head,
    forwarded_proto_line,
    forwarding_lines,
    relayable_headers,
    relayed_header_lines,
    request_id_of,
)
from gateway.http.upstream import ResponseHead, UpstreamConnection, UpstreamFailure
from gateway.internal_client import failure_error
from gateway.upstream_request import header_edits, request_target
from routing.affinity import affinity_pick

if TYPE_CHECKING:
    from experiments.splits.base import Assignment
    from gateway.cluster import ClusterRuntime
    from gateway.core.filters import UpstreamLayer
    from gateway.route import CompiledRoute
    from gateway.runtime import Runtime
    from routing.endpoints import Endpoint
    from routing.resilience.retry import RetryPolicy

log = logging.getLogger("turnout.proxy")

_NOT_FOUND_BODY = error_body(404, "no route matches this request", "not_found")
_INTERNAL_BODY = error_body(500, "the gateway failed to handle this request", "internal")
_QUEUE_DEPTH = b"x-turnout-queue-depth"
_INFLIGHT = b"x-turnout-inflight"
# A connection the upstream closed while it sat idle in the pool: the request never reached the
# upstream, so idempotent requests get one fresh try whatever the retry policy says.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Proxy:
    """The listener's handler. `runtime` is read once per request, so a reload that swaps it (one
    assignment) never changes a request in flight."""

    def __init__(self, runtime: Runtime, scheme: bytes = b"http") -> None:
        self.runtime = runtime
        self.scheme = scheme
        self.proto_line = forwarded_proto_line(scheme)
        self.tasks: set[asyncio.Task[None]] = set()

    def handle(self, exchange: HttpExchange) -> None:
        request = None
        try:
            request = ProxyRequest(self, self.runtime, exchange)
            request.start()
        except Exception as exc:  # a bug of ours must still end the request
            if request is not None:
                request.crash(exc)
            else:
                log.exception("request could not be set up")
                exchange.respond(500, _INTERNAL_BODY)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class ProxyRequest:
    """One request's way through the gateway."""

    __slots__ = (
        "admitted",
        "affinity_key",
        "assignment",
        "attempt",
        "body",
        "buffer",
        "buffer_response",
        "cluster",
        "conn",
        "ctx",
        "done",
        "endpoint",
        "exchange",
        "extra_headers",
        "failed_endpoint",
        "flow_controlled",
        "head_bytes",
        "held_response",
        "proxy",
        "relaying",
        "response_body",
        "retry",
        "route",
        "runtime",
        "sent_at",
        "streaming_body",
        "timeout",
        "upstream_head",
    )

    def __init__(self, proxy: Proxy, runtime: Runtime, exchange: HttpExchange) -> None:
        self.proxy = proxy
        self.runtime = runtime
        self.exchange = exchange
        headers = exchange.headers
        self.ctx = RequestContext(
            exchange.method,
            exchange.path,
            exchange.query,
            headers,
            exchange.client_ip,
            monotonic(),
            request_id_of(headers),
            headers.get("host", ""),
            tls_subject=exchange.conn.tls_subject,
        )
        self.route: CompiledRoute | None = None
        self.cluster: ClusterRuntime | None = None
        self.endpoint: Endpoint | None = None
        self.conn: UpstreamConnection | None = None
        self.body: bytes | None = None
        self.streaming_body = False
        self.head_bytes: bytes | None = None
        self.buffer: list[bytes] | None = None
        self.upstream_head: ResponseHead | None = None
        self.attempt = 0
        self.sent_at = 0.0
        self.admitted = False
        self.relaying = False
        self.flow_controlled = False
        self.failed_endpoint: Endpoint | None = None
        """Where the last attempt failed: a retry goes elsewhere when it can."""
        self.done = False
        self.assignment: Assignment | None = None
        self.affinity_key: str | None = None
        """Set when the experiment pins each unit to one endpoint of its arm's cluster."""
        self.extra_headers: list[tuple[bytes, bytes]] | None = None
        """Headers every answer to this request carries (experiment and arm, a new unit cookie)."""
        self.buffer_response = False
        self.held_response: tuple[Response, ResponsePending] | None = None
        """The answer whose response hooks began on its head and wait for an awaitable."""
        self.response_body: bytes | None = None
        self.retry: RetryPolicy | None = None
        self.timeout = 0.0

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Go on in a task; whatever it raises still ends this request."""
        self.proxy.spawn(self._guarded(coroutine))

    async def _guarded(self, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except Exception as exc:
            self.crash(exc)

    # ----- request phase -----

    def start(self) -> None:
        ctx = self.ctx
        exchange = self.exchange
        match = self.runtime.router.match(exchange.method, exchange.path, ctx.host, exchange.headers)
        if match is None:
            ctx.status = 404
            exchange.respond(404, _NOT_FOUND_BODY, headers=((b"x-request-id", ctx.request_id.encode()),))
            self.runtime.metrics.unrouted.inc()
            ctx.bytes_out = exchange.response_bytes
            self.done = True
            self.runtime.log_request(ctx, None, monotonic() - ctx.started)
            return
        route: CompiledRoute = match.payload
        self.route = route
        ctx.route = route.name
        ctx.model = match.model
        ctx.model_version = match.version
        chain = route.filters
        if chain.empty:
            self.dispatch()
            return
        if chain.broken is not None:
            self.fail(chain.broken)
            return
        if chain.on_request:
            # What the request phase leaves in ctx.headers is what the upstream gets: the client's
            # headers are kept apart to tell what the filters changed.
            ctx.headers = dict(exchange.headers)
        if chain.needs_request_body:
            if not exchange.body_complete:
                self.spawn(self._request_phase_async(0, None))
                return
            ctx.body = self.body = exchange.take_complete_body()
        self._request_phase(0)

    def _arm_stop(self) -> int | None:
        """Where the request hooks pause for the experiment's assignment (before a cache lookup)."""
        route = self.route
        assert route is not None
        if route.experiment is None or self.assignment is not None:
            return None
        return route.filters.arm_index

    def _request_phase(self, index: int) -> None:
        """Run the plain request hooks from `index`; go async at the first coroutine hook."""
        route = self.route
        assert route is not None
        chain = route.filters
        while True:
            stop = self._arm_stop()
            try:
                answer, index = chain.run_request_sync(self.ctx, index, stop)
            except GatewayError as error:
                self.fail(error)
                return
            if answer is not None:
                if isinstance(answer, Response):
                    self.answer(answer)
                else:  # a plain hook returned an awaitable
                    self.spawn(self._request_phase_async(index, cast("Awaitable[object]", answer)))
                return
            if stop is not None and index == stop:
                assert route.experiment is not None
                if self._assign(route.experiment) is None:
                    return
                continue
            break
        if index < len(chain.on_request):
            self.spawn(self._request_phase_async(index, None))
        else:
            self.dispatch()

    async def _request_phase_async(self, index: int, pending: Awaitable[object] | None) -> None:
        route = self.route
        assert route is not None
        ctx = self.ctx
        chain = route.filters
        try:
            if chain.needs_request_body and ctx.body is None:
                ctx.body = self.body = await self.exchange.read_body()
            while True:
                stop = self._arm_stop()
                answer, index = await chain.run_request(ctx, index, stop, pending)
                pending = None
                if answer is not None or stop is None or index != stop:
                    break
                assert route.experiment is not None
                if self._assign(route.experiment) is None:
                    return
        except GatewayError as error:
            self.fail(error)
            return
        except ConnectionResetError:
            self.client_gone()
            return
        if answer is not None:
            self.answer(answer)
        else:
            self.dispatch()

    # ----- choosing and calling the upstream -----

    def dispatch(self) -> None:
        route = self.route
        assert route is not None
        ctx = self.ctx
        if route.feedback:
            self.spawn(self._feedback())
            return
        if route.experiment is not None:
            cluster = self._assign(route.experiment)
            if cluster is None:
                return
        else:
            assert route.cluster is not None
            cluster = route.cluster
        self.cluster = cluster
        ctx.cluster = cluster.name
        self.retry = route.retry if route.retry is not None else cluster.retry
        self.timeout = route.timeout if route.timeout is not None else cluster.request_timeout
        if not cluster.breaker.try_acquire():
            cluster.breaker_rejections += 1
            self.fail(Overloaded(f"cluster '{cluster.name}' is at its limit of concurrent requests"))
            return
        cluster.retry.budget.request_started()
        self.admitted = True
        if route.layer is not None:
            self.spawn(self._forward_through_layer(route.layer))
            return
        if ctx.body is not None:
            self.body = ctx.body  # a filter read (and may have rewritten) the body
        elif self.exchange.body_complete:
            self.body = self.exchange.take_complete_body()
        elif self.exchange.content_length is not None:
            self.spawn(self._read_body_then_send())
            return
        else:
            self.streaming_body = True  # chunked: streamed, retried only before the upstream saw it
        ctx.bytes_in = len(self.body) if self.body is not None else 0
        self.send()

    def _assign(self, name: str) -> ClusterRuntime | None:
        """The experiment's choice of arm for this request: its cluster, headers and exposure.
        Made once: before a filter that reads the arm (a cache), else when the upstream is chosen."""
        if self.assignment is not None:
            return self.runtime.clusters.get(self.assignment.cluster)
        service = self.runtime.experiments
        split = service.splits.get(name) if service is not None else None
        if service is None or split is None:
            self.fail(ServiceUnavailable(f"experiment '{name}' is not running"))
            return None
        assignment = split.choose(self.ctx)
        cluster = self.runtime.clusters.get(assignment.cluster)
        if cluster is None:
            self.fail(ServiceUnavailable(f"experiment '{name}': unknown cluster '{assignment.cluster}'"))
            return None
        self.assignment = assignment
        exposure_id = service.expose(assignment, self.ctx)
        if assignment.unit_id is not None and getattr(service.configs.get(name), "affinity", False):
            self.affinity_key = assignment.unit_id
        self.extra_headers = [
            (b"x-turnout-experiment", assignment.experiment.encode()),
            (b"x-turnout-arm", assignment.arm.encode()),
            (b"x-turnout-exposure-id", exposure_id.encode()),
        ]
        if assignment.set_cookie is not None:
            self.extra_headers.append((b"set-cookie", assignment.set_cookie.encode("latin-1")))
        self.buffer_response = service.needs_response_body(name)
        if assignment.mirrors and self.ctx.body is None and self.exchange.body_complete:
            self.ctx.body = self.exchange.take_complete_body()  # the mirrors get a copy
        return cluster

    async def _feedback(self) -> None:
        """POST /v1/feedback-style route: a delayed business outcome for an experiment."""
        service = self.runtime.experiments
        try:
            body = self.ctx.body if self.ctx.body is not None else await self.exchange.read_body()
        except GatewayError as error:
            self.fail(error)
            return
        except ConnectionResetError:
            self.client_gone()
            return
        if self.exchange.method != "POST":
            self.answer(Response.error(405, "feedback is sent with POST", "method_not_allowed"))
            return
        if service is None:
            self.answer(Response.error(503, "no experiment is configured", "unavailable"))
            return
        try:
            payload = loads(body, "the feedback body")
        except JsonTooComplex as error:
            self.fail(error)
            return
        except orjson.JSONDecodeError as exc:
            self.answer(Response.error(400, f"body is not JSON: {exc}", "bad_request"))
            return
        try:
            receipt = await service.accept_feedback(payload)
        except GatewayError as error:
            self.fail(error)
            return
        self.answer(Response.json(202, receipt))

    async def _read_body_then_send(self) -> None:
        try:
            self.body = await self.exchange.read_body()
        except GatewayError as error:
            self.fail(error)
            return
        except ConnectionResetError:
            self.client_gone()
            return
        self.ctx.bytes_in = len(self.body)
        self.send()

    def send(self) -> None:
        """One attempt: pick an endpoint and send the request on an idle connection (or a new one)."""
        cluster = self.cluster
        route = self.route
        assert cluster is not None and route is not None
        endpoint = None
        if self.affinity_key is not None:
            endpoint = affinity_pick(cluster.endpoints.eligible, self.affinity_key)
        if endpoint is None:
            endpoint = cluster.endpoints.pick(self.ctx, self.failed_endpoint)
        if endpoint is None:
            self.fail(ServiceUnavailable(f"cluster '{cluster.name}' has no healthy endpoint"))
            return
        self.endpoint = endpoint
        self.ctx.endpoint = endpoint.address
        if self.head_bytes is None:
            self.head_bytes = self._request_head(route, endpoint)
        cluster.endpoints.on_start(endpoint)
        pool = cluster.pool_for(endpoint)
        conn = pool.take_idle()
        if conn is None:
            self.spawn(self._connect_then_send(pool))
        else:
            self._send_on(conn)

    def _upstream_path(self) -> str:
        """The path the upstream sees: the request filters', after the route's prefix rewrite."""
        route = self.route
        path = self.ctx.path
        return path if route is None or route.rewrite is None else route.rewrite.apply(path)

    def _request_head(self, route: CompiledRoute, endpoint: Endpoint) -> bytes:
        exchange = self.exchange
        ctx = self.ctx
        if route.rewrite is None and ctx.path == exchange.path and ctx.query == exchange.query:
            target = exchange.target  # as the client sent it
        else:  # a rewrite, or a filter changed the path or the query (removed a token)
            target = request_target(self._upstream_path(), ctx.query)
        headers = ctx.headers
        # The request filters worked on a copy of the client's headers (see `start`).
        edits = None if headers is exchange.headers else header_edits(exchange.headers, headers)
        return build_request_head(
            exchange.method,
            target,
            exchange.raw_headers,
            headers,
            route.request_headers,
            forwarding_lines(headers, ctx.client_ip, self.proxy.proto_line, ctx.request_id),
            len(self.body) if self.body is not None else None,
            endpoint.address,
            edits.strip if edits is not None else None,
            edits.add if edits is not None else None,
        )

    async def _connect_then_send(self, pool: Any) -> None:
        try:
            conn = await pool.acquire(self.cluster.breaker if self.cluster else None)
        except UpstreamFailure as failure:
            self.on_error(failure)
            return
        self._send_on(conn)

    def _send_on(self, conn: UpstreamConnection) -> None:
        route = self.route
        assert route is not None and self.head_bytes is not None
        self.conn = conn
        self.sent_at = monotonic()
        conn.send_request(self.head_bytes, self.body, self.exchange.method == "HEAD", self.timeout, self)
        if self.streaming_body:
            self.spawn(self._pump_body(conn))

    async def _pump_body(self, conn: UpstreamConnection) -> None:
        """Stream a chunked request body upstream as it arrives."""
        try:
            while chunk := await self.exchange.read_chunk():
                self.ctx.bytes_in += len(chunk)
                conn.send_body_chunk(chunk)
        except GatewayError as error:
            conn.close()
            self.fail(error)
            return
        except ConnectionResetError:
            conn.close()
            return
        conn.send_body_chunk(b"")

    async def _forward_through_layer(self, layer: UpstreamLayer) -> None:
        """Send through the route's upstream layer (batching) and answer with what it returns."""
        task = asyncio.current_task()
        if task is not None:

            def leave() -> None:
                task.cancel()

            self.exchange.on_gone = leave
        ctx = self.ctx
        try:
            if ctx.body is None:
                ctx.body = await self.exchange.read_body()
            ctx.bytes_in = len(ctx.body)
            response = await layer.forward(ctx, self._upstream_path())
        except GatewayError as error:
            self.fail(error)
            return
        except (asyncio.CancelledError, ConnectionResetError):
            self.client_gone()
            return
        except Exception as exc:  # a bug in the layer's filter, not in the upstream
            assert self.route is not None
            self.fail(self.route.filters.failed(layer.name, "upstream", exc))
            return
        finally:
            self.exchange.on_gone = None
        self._offer_to_mirrors(response.status, response.body or b"")
        self.answer(response)

    # ----- the upstream's answer (ExchangeObserver) -----

    def on_head(self, head: ResponseHead) -> None:
        # Called from the upstream parser: an exception escaping here would be taken for a
        # malformed answer and charged to the endpoint, so none does.
        try:
            self._on_head(head)
        except Exception as exc:
            self.crash(exc)

    def _on_head(self, head: ResponseHead) -> None:
        ctx = self.ctx
        cluster = self.cluster
        endpoint = self.endpoint
        assert cluster is not None and endpoint is not None and self.route is not None
        now = monotonic()
        ctx.upstream_latency = now - self.sent_at
        if head.status >= 500:
            cluster.endpoints.on_failure(endpoint, now)
            if self._may_retry("", head.status):
                self.failed_endpoint = endpoint
                self._abandon_attempt()
                self._retry(budgeted=True)
                return
        else:
            cluster.endpoints.on_success(endpoint, ctx.upstream_latency, now)
        if cluster.protocol != "http":
            _note_load_report(head, endpoint)
        ctx.status = head.status
        chain = self.route.filters
        if chain.on_response or self.buffer_response:
            if chain.needs_response_body or not chain.response_is_sync or self.buffer_response:
                self.buffer = []  # the filters see the whole answer before the client does
                self.upstream_head = head
                return
            response = Response(head.status, _decode_headers(relayable_headers(head.headers)), None)
            try:
                pending = chain.run_response_sync(ctx, response)
            except GatewayError as error:
                self._abandon_attempt()  # the endpoint answered well: it is not charged
                self.fail(error)
                return
            if pending is not None:  # a plain hook returned an awaitable: hold the answer back
                self.buffer = []
                self.upstream_head = head
                self.held_response = (response, pending)
                return
            self._send_response_head(response.status, self._final_headers(response), head)
        else:
            lines = relayed_header_lines(
                head.headers, self.route.response_headers, ctx.request_id.encode(), self.extra_headers
            )
            self.relaying = True
            self.exchange.send_head_block(head.status, lines, head.content_length, head.reason or None)

    def _send_response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], head: ResponseHead
    ) -> None:
        self.ctx.status = status
        self.relaying = True
        self.exchange.send_head(status, headers, head.content_length, head.reason or None)

    def on_body(self, data: bytes) -> None:
        try:
            buffer = self.buffer
            if buffer is not None:
                buffer.append(data)
            elif self.exchange.conn.closed:
                conn = self.conn
                if conn is not None:  # the client left: stop reading an answer nobody will see
                    conn.close()
            else:
                self.exchange.send_body(data)
        except Exception as exc:
            self.crash(exc)

    def on_data_processed(self) -> None:
        """A packet was relayed and the answer goes on: flush it, and from now on let a slow client
        pause the upstream. (Most answers end within their first packet and never get here.)"""
        if self.relaying:
            try:
                self.exchange.flush()  # a stream's first bytes must not wait for the next packet
                conn = self.conn
                if not self.flow_controlled and conn is not None:
                    self.flow_controlled = True
                    self.exchange.set_flow_control(conn.pause_reading, conn.resume_reading)
            except Exception as exc:
                self.crash(exc)

    def on_end(self) -> None:
        try:
            self._on_end()
        except Exception as exc:
            self.crash(exc)

    def _on_end(self) -> None:
        conn = self.conn
        self.conn = None
        if self.buffer is not None:
            body = b"".join(self.buffer)
            self.buffer = None
            if conn is not None:
                conn.release()
            self._finish_attempt()
            self._respond_through_filters(body)
            return
        if self.flow_controlled:
            self.exchange.set_flow_control(None, None)
        self.exchange.end()
        if conn is not None:
            conn.release()
        self._finish_attempt()
        self.finish()

    def on_error(self, failure: UpstreamFailure) -> None:
        try:
            self._on_error(failure)
        except Exception as exc:
            self.crash(exc)

    def _on_error(self, failure: UpstreamFailure) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()
        endpoint = self.endpoint
        self._finish_attempt()
        cluster = self.cluster
        assert cluster is not None
        if self.relaying:  # bytes reached the client: nothing to do but cut the connection
            if self.flow_controlled:
                self.exchange.set_flow_control(None, None)
            self.ctx.error = failure.message
            self.exchange.abort()
            self.finish()
            return
        if failure.kind == "overloaded":  # our own limit, not the endpoint's fault
            self.fail(failure_error(failure, cluster.name))
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
            and self.exchange.method in _IDEMPOTENT
        ):
            self._retry(budgeted=False)
        else:
            self.fail(failure_error(failure, cluster.name))

    # ----- retries -----

    def _may_retry(self, kind: str, status: int | None) -> bool:
        route = self.route
        assert route is not None
        retry = self.retry
        assert retry is not None and self.cluster is not None
        if self.attempt >= retry.max_retries or self.body is None or not retry.should_retry(kind, status):
            return False
        return self.cluster.retry.budget.try_acquire_retry()

    def _abandon_attempt(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.detach()
            conn.close()
        self._finish_attempt()

    def _finish_attempt(self) -> None:
        endpoint = self.endpoint
        if endpoint is not None and self.cluster is not None:
            self.cluster.endpoints.on_finish(endpoint)
        self.endpoint = None

    def _retry(self, budgeted: bool) -> None:
        route = self.route
        assert route is not None and self.cluster is not None
        assert self.retry is not None
        delay = self.retry.backoff(self.attempt)
        self.attempt += 1
        self.ctx.retries = self.attempt
        self.cluster.retries += 1
        budget = self.cluster.retry.budget

        def again() -> None:
            if budgeted:
                budget.release_retry()
            if self.exchange.client_connected:
                self.send()
            else:
                self.client_gone()

        asyncio.get_running_loop().call_later(delay, again)

    # ----- answers and the end -----

    def _respond_through_filters(self, body: bytes) -> None:
        route = self.route
        assert route is not None
        head = self.upstream_head
        assert head is not None
        self.response_body = body
        self._offer_to_mirrors(head.status, body)
        held = self.held_response
        if held is not None:  # the response hooks began on the head and wait for an awaitable
            self.held_response = None
            response, pending = held
            response.body = body
            self.spawn(self._respond_async(response, pending))
            return
        self._run_response(Response(head.status, _decode_headers(relayable_headers(head.headers)), body))

    def _run_response(self, response: Response) -> None:
        """The response hooks, then the answer to the client."""
        route = self.route
        assert route is not None
        chain = route.filters
        if not chain.response_is_sync:
            self.spawn(self._respond_async(response, None))
            return
        try:
            pending = chain.run_response_sync(self.ctx, response)
        except GatewayError as error:
            self.fail(error)
            return
        if pending is None:
            self._write_response(response)
        else:
            self.spawn(self._respond_async(response, pending))

    def _offer_to_mirrors(self, status: int, body: bytes) -> None:
        """Copy a request of a shadow experiment to its mirrors, with the primary's answer."""
        assignment = self.assignment
        if assignment is not None and assignment.mirrors and self.runtime.experiments is not None:
            self.runtime.experiments.offer_shadow(
                assignment, self.ctx, self._upstream_path(), status, body, self.ctx.upstream_latency
            )

    async def _respond_async(self, response: Response, pending: ResponsePending | None) -> None:
        route = self.route
        assert route is not None
        try:
            if pending is None:
                await route.filters.run_response(self.ctx, response)
            else:
                await route.filters.run_response(self.ctx, response, pending.index, pending.awaitable)
        except GatewayError as error:
            self.fail(error)
            return
        self._write_response(response)

    def answer(self, response: Response) -> None:
        """A filter answered: the answer passes the response filters like any other."""
        route = self.route
        assert route is not None
        self.ctx.status = response.status
        self._run_response(response)

    def _final_headers(self, response: Response) -> list[tuple[bytes, bytes]]:
        """A response's headers as the client gets them: the route's header rules applied."""
        route = self.route
        assert route is not None
        rules = route.response_headers
        headers = [
            (n.encode("latin-1"), v.encode("latin-1"))
            for n, v in response.headers
            if n.encode("latin-1") not in rules.remove
        ]
        headers.extend(rules.add_pairs)
        headers.append((b"x-request-id", self.ctx.request_id.encode()))
        if self.extra_headers:
            headers.extend(self.extra_headers)
        return headers

    def _write_response(self, response: Response) -> None:
        self.ctx.status = response.status
        body = response.body or b""
        self.response_body = body
        self.exchange.send_head(response.status, self._final_headers(response), len(body))
        self.exchange.send_body(body)
        self.exchange.end()
        self.finish()

    def fail(self, error: GatewayError) -> None:
        ctx = self.ctx
        ctx.status = error.status
        ctx.error = error.detail if isinstance(error, FilterError) else error.message
        extra = [(b"x-request-id", ctx.request_id.encode()), *(self.extra_headers or ())]
        extra.extend((k.encode(), v.encode()) for k, v in error.headers.items())
        self.exchange.respond(error.status, error.body(), headers=extra)
        self.finish()

    def crash(self, exc: Exception) -> None:
        """An exception nobody expected (a bug of ours): answer 500, or close a response already
        started; free the upstream connection without charging its endpoint; finish."""
        log.error("request %s failed", self.ctx.request_id, exc_info=exc)
        conn = self.conn
        self.conn = None
        try:
            if conn is not None:
                conn.detach()
                conn.close()
            self._finish_attempt()
            if self.flow_controlled:
                self.exchange.set_flow_control(None, None)
        except Exception:
            log.exception("request %s: cleaning up after a failure failed", self.ctx.request_id)
        if self.done:
            return
        ctx = self.ctx
        ctx.error = f"internal error: {type(exc).__name__}: {exc}"
        if self.exchange.head_sent:
            self.exchange.abort()
        else:
            ctx.status = 500
            self.exchange.respond(500, _INTERNAL_BODY, headers=((b"x-request-id", ctx.request_id.encode()),))
        self.finish()

    def client_gone(self) -> None:
        self.ctx.status = 499
        self.ctx.error = "client closed the connection"
        self.exchange.abort()
        self.finish()

    def finish(self) -> None:
        """The logging phase: runs once, whatever happened."""
        if self.done:
            return
        self.done = True
        ctx = self.ctx
        route = self.route
        if self.admitted and self.cluster is not None:
            self.cluster.retry.budget.request_finished()
            self.cluster.breaker.release()
        ctx.bytes_out = self.exchange.response_bytes
        total = monotonic() - ctx.started
        if route is not None:
            route.metrics.record(ctx, total)
            if route.filters.on_log:
                route.filters.run_log(ctx)
        runtime = self.runtime
        if self.assignment is not None and runtime.experiments is not None:
            runtime.experiments.record_outcome(self.assignment, ctx, total, self.response_body)
        if runtime.access_log is not None:
            runtime.access_log.log(ctx, total)


def _decode_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in headers]


def _note_load_report(head: ResponseHead, endpoint: Endpoint) -> None:
    """Workers report their queue depth and in-flight count in headers: remember them."""
    for name, value in head.headers:
        if len(name) == 21 and name.lower() == _QUEUE_DEPTH:
            if value.isdigit():
                endpoint.queue_depth = int(value)
        elif len(name) == 18 and name.lower() == _INFLIGHT and value.isdigit():
            endpoint.reported_inflight = int(value)

"""The data path: each request is a small state machine driven by the listener's and the upstream
connection's callbacks, like nginx's, rather than a coroutine per request.

One request passes these phases, each a module of its own (Pingora's phases, Tower's layers):

    ProxyRequest.start     head parsed -> RequestContext -> router.match (404)
    request_phase          the route's request hooks: edit the request, or answer it
    backend                feedback, experiment arm, cluster, upstream layer (batching), body
    upstream_attempt       breaker and budget, endpoint, connection, retries; the answer's bytes
    response_phase         the response hooks; the head and body relayed, or held and written
    ProxyRequest.finish    the single exit: breaker and budget released, metrics, the filters'
                           logging phase, experiment outcome, access log (once, whatever happened)

A request that needs to wait for something other than the upstream's answer (a body still arriving,
an async filter, a new connection, a backoff) continues in a task and rejoins the same machine;
everything else runs inside the callbacks, so a typical proxied request costs no task switch.

Every exception is contained below `finish()`: a `GatewayError` is answered with its status; any
other exception from the gateway's own code (`crash`) gets the client a 500, or a closed connection
once the answer has started, frees the upstream connection without charging its endpoint, and
finishes the request. Tasks (`spawn`) and upstream callbacks route their exceptions there too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from time import monotonic
from typing import TYPE_CHECKING, Any

from gateway.backend import choose_backend
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, error_body
from gateway.core.filters import FilterError, Response
from gateway.http.exchange import HttpExchange
from gateway.http.headers import forwarded_proto_line, request_id_of
from gateway.openai_routing import route_by_body_model
from gateway.request_phase import run_request_phase
from gateway.response_phase import run_response

if TYPE_CHECKING:
    from experiments.splits.base import Assignment
    from gateway.filter_chain import ResponsePending
    from gateway.http.upstream import ResponseHead
    from gateway.llm_meter import CompletionMeter
    from gateway.route import CompiledRoute
    from gateway.runtime import Runtime
    from gateway.upstream_attempt import UpstreamAttempt
    from routing.router import RouteMatch

log = logging.getLogger("turnout.proxy")

_NOT_FOUND_BODY = error_body(404, "no route matches this request", "not_found")
_INTERNAL_BODY = error_body(500, "the gateway failed to handle this request", "internal")


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
    """One request's way through the gateway: the state its phases share, and its ends."""

    __slots__ = (
        "affinity_key",
        "assignment",
        "body_meter",
        "buffer_response",
        "ctx",
        "done",
        "exchange",
        "extra_headers",
        "held_response",
        "proxy",
        "response_body",
        "route",
        "runtime",
        "upstream",
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
        self.upstream: UpstreamAttempt | None = None
        """The call to the cluster, once the backend is chosen (none for answers and layers' own)."""
        self.done = False
        self.assignment: Assignment | None = None
        self.affinity_key: str | None = None
        """Set when the experiment pins each unit to one endpoint of its arm's cluster."""
        self.extra_headers: list[tuple[bytes, bytes]] | None = None
        """Headers every answer to this request carries (experiment and arm, a new unit cookie)."""
        self.buffer_response = False
        """The experiment records the answer's body: the response phase holds it back."""
        self.upstream_head: ResponseHead | None = None
        """The head of an answer held back until its body is complete."""
        self.held_response: tuple[Response, ResponsePending] | None = None
        """The answer whose response hooks began on its head and wait for an awaitable."""
        self.response_body: bytes | None = None
        self.body_meter: CompletionMeter | None = None
        """On an OpenAI route: watches the answer for token timings and usage (gateway/llm_meter.py)."""

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Go on in a task; whatever it raises still ends this request."""
        self.proxy.spawn(self._guarded(coroutine))

    async def _guarded(self, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except Exception as exc:
            self.crash(exc)

    def start(self) -> None:
        ctx = self.ctx
        exchange = self.exchange
        match = self.runtime.router.match(exchange.method, exchange.path, ctx.host, exchange.headers)
        if match is None:
            ctx.status = 404
            exchange.respond(404, _NOT_FOUND_BODY, headers=((b"x-request-id", ctx.request_id.encode()),))
            self.runtime.metrics.unrouted.inc()
            if self.runtime.tracing is not None:
                self.runtime.tracing.unrouted(ctx)
            ctx.bytes_out = exchange.response_bytes
            self.done = True
            self.runtime.log_request(ctx, None, monotonic() - ctx.started)
            return
        if match.pending:  # an OpenAI route: the model is in the body
            route_by_body_model(self)
            return
        self.begin(match)

    def begin(self, match: RouteMatch[CompiledRoute]) -> None:
        """The request phases, on the route that matched."""
        ctx = self.ctx
        route: CompiledRoute = match.payload
        self.route = route
        ctx.route = route.name
        ctx.model = match.model
        ctx.model_version = match.version
        if route.filters.empty:
            choose_backend(self)
        else:
            run_request_phase(self)

    # ----- the ends: every path through the phases reaches exactly one, then finish() -----

    def answer(self, response: Response) -> None:
        """A filter (or a layer) answered: the answer passes the response phase like any other."""
        self.ctx.status = response.status
        run_response(self, response)

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
        upstream = self.upstream
        if upstream is not None:
            try:
                upstream.drop()
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
        upstream = self.upstream
        if upstream is not None:
            upstream.release()
            # The attempt and the request point at each other: unlinked here, both are freed by
            # their reference counts instead of waiting for the cycle collector.
            self.upstream = None
        ctx.bytes_out = self.exchange.response_bytes
        total = monotonic() - ctx.started
        if route is not None:
            route.metrics.record(ctx, total)
            meter = self.body_meter
            if meter is not None:  # usage first: the logging phase may settle token estimates
                if self.response_body is not None:
                    meter.read_whole(self.response_body)
                meter.close(ctx, self.runtime.metrics.llm)
            if route.filters.on_log:
                route.filters.run_log(ctx)
        runtime = self.runtime
        if self.assignment is not None and runtime.experiments is not None:
            runtime.experiments.record_outcome(self.assignment, ctx, total, self.response_body)
        if runtime.access_log is not None:
            runtime.access_log.log(ctx, total)

"""One request as Envoy describes it, decided by the same objects that decide the proxy's requests.

`MeshExchange` is the mesh's `ProxyRequest` without bytes: Envoy carries the request, turnout
decides. It is built from the request headers Envoy sends (ext_proc, ext_authz), matched by the
runtime's router, and then `decide` runs the route's request filters (the same filter objects as the
proxy's route, so a limit or a cache is one state for both doors), assigns the experiment arm with
the same split (so a unit gets the same arm from either door), and picks the endpoint with the
cluster's balancer, health and load reports. `finish` is the single exit, as in the proxy: endpoint
accounting, route metrics, the filters' logging phase, the experiment outcome and the access log,
exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from inspect import isawaitable
from time import monotonic
from typing import TYPE_CHECKING, TypeVar

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, NotFound, ServiceUnavailable
from gateway.core.filters import FilterError, Response
from gateway.core.paths import normalize_path
from gateway.http.headers import request_id_of

if TYPE_CHECKING:
    from experiments.splits.base import Assignment
    from gateway.cluster import ClusterRuntime
    from gateway.route import CompiledRoute
    from gateway.runtime import Runtime
    from routing.endpoints import Endpoint

_T = TypeVar("_T")

# What workers report of their own load in answer headers (least_queue balances on it).
_QUEUE_DEPTH = "x-turnout-queue-depth"
_INFLIGHT = "x-turnout-inflight"

# Fallback endpoints offered after the pick: the endpoint-picker protocol lets the proxy try them in
# order when the first fails; three covers a retry budget without listing a whole fleet.
MAX_FALLBACKS = 3


def in_task(awaitable: Awaitable[_T]) -> Awaitable[_T]:
    """`awaitable`, run as a task of its own when the caller runs outside one. ext_proc answers a
    message by stepping its coroutine by hand (gateway/mesh/calls.py), so an in-memory decision
    costs no task; a hook that waits (Redis) times itself with `asyncio.timeout`, which needs a
    task: it gets one."""
    if asyncio.current_task() is None:
        return asyncio.ensure_future(awaitable)
    return awaitable


@dataclass(slots=True)
class Forward:
    """The decision to let the request through: where to, and what to change on the way."""

    cluster: str
    endpoint: str
    fallbacks: tuple[str, ...]
    set_headers: list[tuple[str, str]]
    remove_headers: list[str]


def error_response(error: GatewayError) -> Response:
    """A `GatewayError` as the answer Envoy sends instead of forwarding."""
    headers = [("content-type", "application/json"), *((k.lower(), v) for k, v in error.headers.items())]
    return Response(error.status, headers, error.body())


def split_pseudo_headers(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Envoy's header list -> (pseudo-headers without the colon, headers by lower-case name, repeated
    headers joined with ", " as the proxy joins them)."""
    pseudo: dict[str, str] = {}
    headers: dict[str, str] = {}
    for key, value in pairs:
        name = key.lower()
        if name.startswith(":"):
            pseudo[name[1:]] = value
        elif name in headers:
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
    return pseudo, headers


class MeshExchange:
    """One request's way through the decision: the state its phases share, and its single exit."""

    __slots__ = (
        "answer_body",
        "assignment",
        "ctx",
        "endpoint",
        "extra_response_headers",
        "finished",
        "route",
        "runtime",
        "sent_headers",
    )

    def __init__(self, runtime: Runtime, ctx: RequestContext, route: CompiledRoute | None) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.route = route
        edits = route is not None and route.filters.edits_headers
        self.sent_headers = dict(ctx.headers) if edits else ctx.headers
        """The headers as Envoy sent them: what the filters changed is told apart from these (the
        request's own, not a copy, when no filter of the route can change them)."""
        self.assignment: Assignment | None = None
        self.endpoint: Endpoint | None = None
        self.extra_response_headers: list[tuple[str, str]] = []
        self.answer_body: bytes | None = None
        """The upstream's answer body, when Envoy sent it (the experiment's output metrics read it)."""
        self.finished = False

    @classmethod
    def from_headers(
        cls, runtime: Runtime, pairs: Iterable[tuple[str, str]], client_ip: str = ""
    ) -> MeshExchange:
        """Match the request Envoy describes; raises `GatewayError` for a path with no normal form."""
        pseudo, headers = split_pseudo_headers(pairs)
        return cls.from_request(runtime, pseudo, headers, client_ip)

    @classmethod
    def from_request(
        cls, runtime: Runtime, pseudo: dict[str, str], headers: dict[str, str], client_ip: str = ""
    ) -> MeshExchange:
        """`from_headers` on the request's pseudo-headers (without their colon) and headers by
        lower-case name; `headers` becomes the request's own."""
        target = pseudo.get("path", "/")
        raw_path, _, query = target.partition("?")
        path = normalize_path(raw_path)
        host = pseudo.get("authority") or headers.get("host", "")
        method = pseudo.get("method", "GET")
        if not client_ip:
            forwarded = headers.get("x-forwarded-for", "")
            client_ip = forwarded.split(",", 1)[0].strip()
        ctx = RequestContext(
            method, path, query, headers, client_ip, monotonic(), request_id_of(headers), host
        )
        match = runtime.router.match(method, path, host, headers)
        if match is not None and match.pending:
            # An OpenAI route that reads the model from the body, not seen here: such routes do
            # not match (docs/llm.md); the rules after them still may.
            match = runtime.router.match(method, path, host, headers, body_read=True)
        route: CompiledRoute | None = None
        if match is not None:
            route = match.payload
            ctx.route = route.name
            ctx.model = match.model
            ctx.model_version = match.version
        return cls(runtime, ctx, route)

    # ----- request -----

    async def decide(
        self, delegated: frozenset[str] = frozenset(), reads_body: bool | None = None
    ) -> Response | Forward:
        """The route's request filters, the experiment arm and the endpoint: an answer for the
        client, or where to forward. Filters of the `delegated` kinds are skipped (Envoy asked
        ext_authz and RLS already); `reads_body=False` runs only the filters that do not read the
        body (a streamed body is decided on its headers). Never raises for the caller's or a
        filter's fault."""
        try:
            return await self._decide(delegated, reads_body)
        except GatewayError as error:
            return self.refused(error)

    def refused(self, error: GatewayError) -> Response:
        """A `GatewayError` as the answer, noted on the request for its log line."""
        self.ctx.error = error.detail if isinstance(error, FilterError) else error.message
        return error_response(error)

    async def _decide(self, delegated: frozenset[str], reads_body: bool | None) -> Response | Forward:
        route = self.route
        if route is None:
            raise NotFound("no route matches this request")
        answer = await self.run_filters(None, delegated, reads_body)
        if answer is not None:
            return answer
        if route.feedback:
            raise NotFound("feedback is accepted on turnout's own listener, not through the mesh")
        cluster = self._assign(route.experiment) if route.experiment is not None else route.cluster
        assert cluster is not None
        return self._forward(route, cluster)

    async def run_filters(
        self,
        kinds: frozenset[str] | None,
        skip: frozenset[str] = frozenset(),
        reads_body: bool | None = None,
    ) -> Response | None:
        """The route's request hooks in order (only those of `kinds`, filter config keys such as
        `auth_apikey`, when given; none of `skip`; when `reads_body` is given, only the filters
        whose `needs_request_body` equals it) until one answers. On an experiment route the arm is
        assigned before the first hook that reads it, as on the proxy."""
        route = self.route
        if route is None:
            raise NotFound("no route matches this request")
        chain = route.filters
        if chain.broken is not None:
            raise chain.broken
        ctx = self.ctx
        choosing = kinds is not None or bool(skip)
        for index, phase in enumerate(chain.on_request):
            if choosing:
                kind = phase.name.partition("#")[0]
                if kind in skip or (kinds is not None and kind not in kinds):
                    continue
            if reads_body is not None and phase.filter.needs_request_body != reads_body:
                continue
            if index == chain.arm_index and route.experiment is not None:
                self._assign(route.experiment)
            trace = ctx.trace  # None before the tracing hook, the chain's first, has run
            began = monotonic() if trace is not None else 0.0
            try:
                result = phase.hook(ctx)
                if result is not None and not isinstance(result, Response) and isawaitable(result):
                    result = await in_task(result)
            except GatewayError:
                raise
            except Exception as exc:
                raise chain.failed(phase.name, "request", exc) from exc
            if trace is not None and phase.traced:
                trace.span(f"filter {phase.name} request", began, monotonic(), {"turnout.filter": phase.name})
            if isinstance(result, Response):
                return result
            if result is not None:
                error = TypeError(f"a hook returned {type(result).__name__}, not None or a Response")
                raise chain.failed(phase.name, "request", error)
        return None

    def _assign(self, name: str | None) -> ClusterRuntime:
        """The experiment's arm for this request (once, sticky to the unit), and its cluster."""
        runtime = self.runtime
        if self.assignment is not None:
            return runtime.clusters[self.assignment.cluster]
        service = runtime.experiments
        split = service.splits.get(name) if service is not None and name is not None else None
        if service is None or split is None:
            raise ServiceUnavailable(f"experiment '{name}' is not running")
        ctx = self.ctx
        trace = ctx.trace
        began = monotonic() if trace is not None else 0.0
        assignment = split.choose(ctx)
        if trace is not None:
            attributes = {"turnout.experiment": assignment.experiment, "turnout.arm": assignment.arm}
            trace.span("experiment assignment", began, monotonic(), attributes)
        cluster = runtime.clusters.get(assignment.cluster)
        if cluster is None:
            raise ServiceUnavailable(f"experiment '{name}': unknown cluster '{assignment.cluster}'")
        self.assignment = assignment
        exposure_id = service.expose(assignment, ctx)
        extra = self.extra_response_headers
        extra.append(("x-turnout-experiment", assignment.experiment))
        extra.append(("x-turnout-arm", assignment.arm))
        extra.append(("x-turnout-exposure-id", exposure_id))
        if assignment.set_cookie is not None:
            extra.append(("set-cookie", assignment.set_cookie))
        return cluster

    def _forward(self, route: CompiledRoute, cluster: ClusterRuntime) -> Forward:
        ctx = self.ctx
        ctx.cluster = cluster.name
        endpoints = cluster.endpoints
        trace = ctx.trace
        began = monotonic() if trace is not None else 0.0
        endpoint = endpoints.pick(ctx)
        if trace is not None:  # Envoy connects: the pick is the mesh's share of the upstream call
            attributes = {
                "turnout.cluster": cluster.name,
                "turnout.endpoint": endpoint.address if endpoint else "",
            }
            trace.span("endpoint pick", began, monotonic(), attributes)
        if endpoint is None:
            raise ServiceUnavailable(f"no healthy endpoint in cluster '{cluster.name}'")
        endpoints.on_start(endpoint)
        self.endpoint = endpoint
        ctx.endpoint = endpoint.address
        fallbacks: tuple[str, ...] = ()
        for other in endpoints.eligible:  # the first few others: a large fleet is not walked whole
            if other is not endpoint:
                fallbacks += (other.address,)
                if len(fallbacks) == MAX_FALLBACKS:
                    break
        sent = self.sent_headers
        edited = ctx.headers
        remove: list[str] = []
        set_headers: list[tuple[str, str]] = []
        if sent is not edited:
            remove = [name for name in sent if name not in edited]
            set_headers = [(name, value) for name, value in edited.items() if sent.get(name) != value]
        if route.rewrite is not None:
            path = route.rewrite.apply(ctx.path)
            set_headers.append((":path", f"{path}?{ctx.query}" if ctx.query else path))
        return Forward(cluster.name, endpoint.address, fallbacks, set_headers, remove)

    # ----- response -----

    async def respond(
        self, status: int, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> Response:
        """The response phase on the upstream's answer head: what the client will see. Raises
        `GatewayError` when a response hook refuses."""
        self.note_answer(status, headers)
        return await self.respond_phase(status, headers, body)

    def note_answer(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        """The upstream answered `status` (for a gRPC answer, the HTTP status its grpc-status maps
        to): the endpoint's outcome (a failure from 500 up, else its latency), and the load report
        in `headers` when given."""
        ctx = self.ctx
        ctx.status = status
        if self.endpoint is not None and self.route is not None:
            cluster = self.runtime.clusters.get(ctx.cluster)
            if cluster is not None:
                now = monotonic()
                ctx.upstream_latency = now - ctx.started
                if status >= 500:
                    cluster.endpoints.on_failure(self.endpoint, now)
                else:
                    cluster.endpoints.on_success(self.endpoint, ctx.upstream_latency, now)
                if headers is not None:
                    _note_load_report(self.endpoint, headers)

    def note_load(self, headers: list[tuple[str, str]]) -> None:
        """The load report in an answer's head whose outcome comes later (a gRPC answer's trailers)."""
        if self.endpoint is not None:
            _note_load_report(self.endpoint, headers)

    async def respond_phase(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        reads_body: bool | None = None,
    ) -> Response:
        """The route's response hooks on the answer (`reads_body` given: only the hooks of filters
        whose `needs_response_body` equals it, as a streamed answer's head and end each run theirs),
        with the experiment's headers unless `reads_body` is True (they went with the head). Raises
        `GatewayError` when a hook refuses."""
        if body is not None:
            self.answer_body = body
        response = Response(status, list(headers), body)
        route = self.route
        if route is not None and route.filters.on_response:
            chain = route.filters
            ctx = self.ctx
            if reads_body is None:
                pending = chain.run_response_sync(ctx, response)
                if pending is not None:
                    await in_task(chain.run_response(ctx, response, pending.index, pending.awaitable))
            else:
                await self._response_hooks(response, reads_body)
        if reads_body is not True:
            for name, value in self.extra_response_headers:
                response.set_header(name, value)
        return response

    async def _response_hooks(self, response: Response, reads_body: bool) -> None:
        """The response hooks of the filters whose `needs_response_body` is `reads_body`."""
        route = self.route
        assert route is not None
        chain = route.filters
        ctx = self.ctx
        for phase in chain.on_response:
            if phase.filter.needs_response_body != reads_body:
                continue
            began = monotonic()
            try:
                result = phase.hook(ctx, response)
                if result is not None and isawaitable(result):
                    await in_task(result)
            except GatewayError:
                raise
            except Exception as exc:
                raise chain.failed(phase.name, "response", exc) from exc
            trace = ctx.trace
            if trace is not None and phase.traced:
                trace.span(
                    f"filter {phase.name} response", began, monotonic(), {"turnout.filter": phase.name}
                )

    def finish(self, status: int | None = None, error: str | None = None, *, seen: bool = True) -> None:
        """The logging phase: runs once, whatever happened (an answer, a cancelled stream).
        `seen=False`: the request went on without turnout seeing its answer (Envoy's processing mode
        skips the response headers): the endpoint is released and the request logged, but neither
        the route's status counts nor the experiment get an outcome nobody saw."""
        if self.finished:
            return
        self.finished = True
        ctx = self.ctx
        if status is not None:
            ctx.status = status
        if error is not None and ctx.error is None:
            ctx.error = error
        route = self.route
        if self.endpoint is not None:
            cluster = self.runtime.clusters.get(ctx.cluster)
            if cluster is not None:
                cluster.endpoints.on_finish(self.endpoint)
        total = monotonic() - ctx.started
        runtime = self.runtime
        if route is not None:
            if seen:
                route.metrics.record(ctx, total)
            if route.filters.on_log:
                route.filters.run_log(ctx)
        elif runtime.tracing is not None:  # no chain, hence no tracing hook: its span, as the proxy's
            runtime.tracing.unrouted(ctx)
        if seen and self.assignment is not None and runtime.experiments is not None:
            runtime.experiments.record_outcome(self.assignment, ctx, total, self.answer_body)
        runtime.log_request(ctx, route, total)


def _note_load_report(endpoint: Endpoint, headers: list[tuple[str, str]]) -> None:
    """The worker's queue depth and in-flight count, as Envoy relays its answer's headers."""
    for name, value in headers:
        if name == _QUEUE_DEPTH and value.isdigit():
            endpoint.queue_depth = int(value)
        elif name == _INFLIGHT and value.isdigit():
            endpoint.reported_inflight = int(value)

"""Backend choice: after the request phase, where the request goes and how it gets there.

feedback route      the body is an experiment outcome: validated, recorded, answered 202
experiment route    the split assigns an arm (once, sticky to the unit): its cluster, the
                    experiment headers every answer carries, the exposure, unit affinity
cluster             an `UpstreamAttempt` (gateway/upstream_attempt.py) takes a place in the
                    cluster's breaker and budget (503 when there is none)
upstream layer      a filter that sends the route's requests itself (batching) gets the body
                    and the path the upstream sees, and its answer goes through the response
                    phase like any other
proxied             the body is taken whole when it is there (so retries can resend it), read
                    first when its length is known and within `RETRY_BUFFER_BYTES`, or relayed
                    upstream as it arrives (chunked, or longer): then never retried; then `send`
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING

import orjson

from gateway.core.errors import GatewayError, ServiceUnavailable
from gateway.core.filters import Response
from gateway.core.json_bounds import JsonTooComplex, loads
from gateway.response_phase import offer_to_mirrors
from gateway.upstream_attempt import UpstreamAttempt
from gateway.upstream_request import upstream_path

# A body of known length up to this size is read whole before it is sent, so that a retry can send
# it again; a longer one goes upstream as it arrives, held nowhere, and is not retried (Envoy bounds
# its retry buffer the same way, by the connection buffer limit, 1 MiB by default). Inference
# requests of JSON features sit far below it; uploads of images, audio or tensors above it stream.
RETRY_BUFFER_BYTES = 1024 * 1024

if TYPE_CHECKING:
    from gateway.cluster import ClusterRuntime
    from gateway.core.filters import UpstreamLayer
    from gateway.proxy import ProxyRequest


def choose_backend(request: ProxyRequest) -> None:
    """Send the request where its route says, once the request phase let it through."""
    route = request.route
    assert route is not None
    ctx = request.ctx
    if route.feedback:
        request.spawn(feedback(request))
        return
    if route.experiment is not None:
        cluster = assign(request, route.experiment)
        if cluster is None:
            return
    else:
        assert route.cluster is not None
        cluster = route.cluster
    ctx.cluster = cluster.name
    attempt = UpstreamAttempt(
        request,
        cluster,
        route.retry if route.retry is not None else cluster.retry,
        route.timeout if route.timeout is not None else cluster.request_timeout,
        request.affinity_key,
    )
    request.upstream = attempt
    refusal = attempt.admit()
    if refusal is not None:
        request.fail(refusal)
        return
    if route.layer is not None and ctx.method == "POST":  # inference calls; GET health checks pass by
        request.spawn(forward_through_layer(request, route.layer))
        return
    exchange = request.exchange
    if ctx.body is not None:
        attempt.body = ctx.body  # a filter read (and may have rewritten) the body
    elif exchange.body_complete:
        attempt.body = exchange.take_complete_body()
    elif exchange.content_length is not None and exchange.content_length <= RETRY_BUFFER_BYTES:
        request.spawn(_read_body_then_send(request, attempt))
        return
    else:  # chunked, or too long to hold for a retry: relayed as it arrives, never retried
        attempt.streaming_body = True
    ctx.bytes_in = len(attempt.body) if attempt.body is not None else 0
    attempt.send()


def assign(request: ProxyRequest, name: str) -> ClusterRuntime | None:
    """The experiment's choice of arm for this request: its cluster, headers and exposure. Made once:
    before a filter that reads the arm (a cache), else here. None when it failed the request."""
    runtime = request.runtime
    if request.assignment is not None:
        return runtime.clusters.get(request.assignment.cluster)
    service = runtime.experiments
    split = service.splits.get(name) if service is not None else None
    if service is None or split is None:
        request.fail(ServiceUnavailable(f"experiment '{name}' is not running"))
        return None
    ctx = request.ctx
    trace = ctx.trace
    began = monotonic() if trace is not None else 0.0
    assignment = split.choose(ctx)
    if trace is not None:
        attributes = {"turnout.experiment": name, "turnout.arm": assignment.arm}
        trace.span("experiment assignment", began, monotonic(), attributes)
    cluster = runtime.clusters.get(assignment.cluster)
    if cluster is None:
        request.fail(ServiceUnavailable(f"experiment '{name}': unknown cluster '{assignment.cluster}'"))
        return None
    request.assignment = assignment
    exposure_id = service.expose(assignment, ctx)
    if assignment.unit_id is not None and getattr(service.configs.get(name), "affinity", False):
        request.affinity_key = assignment.unit_id
    extra = [
        (b"x-turnout-experiment", assignment.experiment.encode()),
        (b"x-turnout-arm", assignment.arm.encode()),
        (b"x-turnout-exposure-id", exposure_id.encode()),
    ]
    if assignment.set_cookie is not None:
        extra.append((b"set-cookie", assignment.set_cookie.encode("latin-1")))
    request.extra_headers = extra
    request.buffer_response = service.needs_response_body(name)
    exchange = request.exchange
    if assignment.mirrors and ctx.body is None and exchange.body_complete:
        ctx.body = exchange.take_complete_body()  # the mirrors get a copy
    return cluster


async def feedback(request: ProxyRequest) -> None:
    """POST /v1/feedback-style route: a delayed business outcome for an experiment."""
    service = request.runtime.experiments
    ctx = request.ctx
    try:
        body = ctx.body if ctx.body is not None else await request.exchange.read_body()
    except GatewayError as error:
        request.fail(error)
        return
    except ConnectionResetError:
        request.client_gone()
        return
    if request.exchange.method != "POST":
        request.answer(Response.error(405, "feedback is sent with POST", "method_not_allowed"))
        return
    if service is None:
        request.answer(Response.error(503, "no experiment is configured", "unavailable"))
        return
    try:
        payload = loads(body, "the feedback body")
    except JsonTooComplex as error:
        request.fail(error)
        return
    except orjson.JSONDecodeError as exc:
        request.answer(Response.error(400, f"body is not JSON: {exc}", "bad_request"))
        return
    try:
        receipt = await service.accept_feedback(payload)
    except GatewayError as error:
        request.fail(error)
        return
    request.answer(Response.json(202, receipt))


async def _read_body_then_send(request: ProxyRequest, attempt: UpstreamAttempt) -> None:
    try:
        attempt.body = await request.exchange.read_body()
    except GatewayError as error:
        request.fail(error)
        return
    except ConnectionResetError:
        request.client_gone()
        return
    request.ctx.bytes_in = len(attempt.body)
    attempt.send()


async def forward_through_layer(request: ProxyRequest, layer: UpstreamLayer) -> None:
    """Send through the route's upstream layer (batching) and answer with what it returns."""
    route = request.route
    assert route is not None
    exchange = request.exchange
    task = asyncio.current_task()
    if task is not None:

        def leave() -> None:
            task.cancel()

        exchange.on_gone = leave
    ctx = request.ctx
    try:
        if ctx.body is None:
            ctx.body = await exchange.read_body()
        ctx.bytes_in = len(ctx.body)
        response = await layer.forward(ctx, upstream_path(ctx, route))
    except GatewayError as error:
        request.fail(error)
        return
    except (asyncio.CancelledError, ConnectionResetError):
        request.client_gone()
        return
    except Exception as exc:  # a bug in the layer's filter, not in the upstream
        request.fail(route.filters.failed(layer.name, "upstream", exc))
        return
    finally:
        exchange.on_gone = None
    offer_to_mirrors(request, response.status, response.body or b"")
    request.answer(response)

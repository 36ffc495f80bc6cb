"""`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: the route's `rate_limit` filters
(the same objects, hence the same in-memory or Redis state, as the proxy's route) answer Envoy.

Each descriptor is one request as the limits see it. Its `route` entry names the turnout route whose
limits apply (Envoy's generic_key action with descriptor_key "route", as turnout's exported routes
declare it); without one, the request's `domain` does. Its other entries fill in what the limit keys
read:

    descriptor key              turnout limit key   RequestContext field
    route                       (selects the route)
    principal                   principal           principal.id
    tenant                      tenant              principal.tenant
    model / version             model               model / model_version
    client_ip, remote_address   client_ip           client_ip (remote_address: Envoy's action)
    header:NAME                 header:NAME         headers[NAME]
    generic_key                 (none)              accepted and ignored (Envoy's generic action)

A descriptor is OVER_LIMIT when one of the route's limits refuses it; the overall code is OVER_LIMIT
when any descriptor is. An unknown route (or domain) is NOT_FOUND and an unknown descriptor key
INVALID_ARGUMENT, naming what is known: Envoy then applies its own failure mode. `hits_addend` above
1 is refused (INVALID_ARGUMENT): the limits' costs come from the request (one, rows, tokens).

With tracing on, each call is a server span (`call_spans.py`) continuing the trace context of the
call's metadata, with each descriptor's limit phases as children; its status is 429 when a
descriptor is over its limit, else 200 (an aborted call: 400, 404 or 500).
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2 as pb
from envoy.service.ratelimit.v3 import rls_pb2_grpc as pb_grpc

from gateway.core.context import Principal, RequestContext
from gateway.core.errors import GatewayError
from gateway.mesh.call_spans import SHOULD_RATE_LIMIT, call_metadata, end_call_span, open_call_span
from gateway.mesh.exchange import MeshExchange

if TYPE_CHECKING:
    from gateway.runtime import Runtime

RATE_LIMIT_FILTERS = frozenset({"rate_limit"})
KNOWN_KEYS = (
    "route",
    "principal",
    "tenant",
    "model",
    "version",
    "client_ip",
    "remote_address",
    "header:NAME",
)
_OK = pb.RateLimitResponse.OK
_OVER_LIMIT = pb.RateLimitResponse.OVER_LIMIT


class DescriptorError(ValueError):
    """A descriptor entry turnout has no limit key for."""


def descriptor_context(route: str, entries: Any) -> RequestContext:
    """The request a descriptor stands for, as the route's limits read it."""
    ctx = RequestContext("POST", "/", "", {}, "", monotonic(), route=route)
    principal: str | None = None
    tenant: str | None = None
    for entry in entries:
        key, value = entry.key, entry.value
        if key == "principal":
            principal = value
        elif key == "tenant":
            tenant = value
        elif key == "model":
            ctx.model = value
        elif key == "version":
            ctx.model_version = value
        elif key in ("client_ip", "remote_address"):
            ctx.client_ip = value
        elif key.startswith("header:") and len(key) > len("header:"):
            ctx.headers[key[len("header:") :].lower()] = value
        elif key not in ("generic_key", "route"):
            raise DescriptorError(f"unknown descriptor key {key!r} (known: {', '.join(KNOWN_KEYS)})")
    if principal is not None or tenant is not None:
        ctx.principal = Principal(principal or tenant or "", tenant)
    return ctx


class RateLimitService(pb_grpc.RateLimitServiceServicer):  # type: ignore[misc]
    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime

    async def ShouldRateLimit(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # gRPC's name
        runtime = self._runtime()
        metadata = call_metadata(context)
        call = RequestContext("POST", f"/{SHOULD_RATE_LIMIT}", "", metadata, "", monotonic())
        trace = open_call_span(runtime, call, SHOULD_RATE_LIMIT, metadata)
        call.status = 500  # unless answered
        try:
            response = await self._answer(runtime, request, context, call)
            call.status = 429 if response.overall_code == _OVER_LIMIT else 200
            return response
        finally:
            end_call_span(trace, call)

    async def _answer(
        self, runtime: Runtime, request: Any, context: grpc.aio.ServicerContext, call: RequestContext
    ) -> Any:
        """The descriptors' statuses; `call` (the call's span) gets the status of an abort."""
        routes = {route.name: route for route in runtime.routes}
        if request.hits_addend > 1:
            await _abort(
                context, call, grpc.StatusCode.INVALID_ARGUMENT, "hits_addend above 1 is not supported"
            )
        statuses = []
        for descriptor in request.descriptors:
            name = next((e.value for e in descriptor.entries if e.key == "route"), request.domain)
            route = routes.get(name)
            if route is None:
                message = f"unknown route {name!r} (routes: {', '.join(routes)})"
                await _abort(context, call, grpc.StatusCode.NOT_FOUND, message)
                raise AssertionError("abort raises")
            try:
                ctx = descriptor_context(route.name, descriptor.entries)
                ctx.trace = call.trace  # the route's limit phases: children of the call's span
                answer = await MeshExchange(runtime, ctx, route).run_filters(RATE_LIMIT_FILTERS)
            except DescriptorError as exc:
                await _abort(context, call, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except GatewayError as error:
                await _abort(context, call, grpc.StatusCode.INTERNAL, error.message)
            code = _OK if answer is None else _OVER_LIMIT
            statuses.append(pb.RateLimitResponse.DescriptorStatus(code=code))
        over = any(status.code == _OVER_LIMIT for status in statuses)
        return pb.RateLimitResponse(overall_code=_OVER_LIMIT if over else _OK, statuses=statuses)


# The HTTP status an aborted call's span records: what the proxy answers for the same fault.
_ABORT_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INTERNAL: 500,
}


async def _abort(
    context: grpc.aio.ServicerContext, call: RequestContext, code: grpc.StatusCode, message: str
) -> None:
    call.status = _ABORT_STATUS[code]
    call.error = message
    await context.abort(code, message)

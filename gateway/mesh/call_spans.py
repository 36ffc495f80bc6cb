"""Server spans of the mesh's unary calls: ext_authz `Check` and RLS `ShouldRateLimit`.

A routed ext_proc request gets its span from its route's filter chain, whose tracing hook runs
first (gateway/tracing.py). These calls run only some of a route's filters (not that hook), so they
open and end their span here: named by the gRPC method (OpenTelemetry's `package.Service/Method`),
continuing the traceparent of the request Envoy describes (ext_authz), else of the call's own
metadata (RLS, whose request carries no headers; Envoy's gRPC client sends its trace context
there), with the filter phases that ran as children and, as the status, what the proxy would have
answered (200, or the refusal: 401, 403, 429; 404 for no route).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.tracing import RequestSpan

if TYPE_CHECKING:
    from gateway.core.context import RequestContext
    from gateway.core.trace import RequestTrace
    from gateway.runtime import Runtime

CHECK = "envoy.service.auth.v3.Authorization/Check"
SHOULD_RATE_LIMIT = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"


def call_metadata(context: Any) -> dict[str, str]:
    """A call's text metadata by lower-case name, from grpcio's servicer context or the mesh
    transport's (`calls.py`); binary (`-bin`) entries are left out."""
    metadata = context.invocation_metadata() or ()
    return {key.lower(): value for key, value in metadata if isinstance(value, str)}


def open_call_span(
    runtime: Runtime, ctx: RequestContext, method: str, metadata: dict[str, str]
) -> RequestTrace | None:
    """The call's span, set as `ctx.trace` (so the filters' phases become its children); None when
    tracing is off."""
    tracing = runtime.tracing
    if tracing is None:
        return None
    carrier = ctx.headers if "traceparent" in ctx.headers else metadata
    trace = tracing.begin(ctx, method, carrier)
    if isinstance(trace, RequestSpan):
        service, _, name = method.partition("/")
        span = trace.server_span
        span.set_attribute("rpc.system", "grpc")
        span.set_attribute("rpc.service", service)
        span.set_attribute("rpc.method", name)
    ctx.trace = trace
    return trace


def end_call_span(trace: RequestTrace | None, ctx: RequestContext) -> None:
    """The call is answered: its span ends with `ctx.status`."""
    if isinstance(trace, RequestSpan):
        trace.end(ctx)

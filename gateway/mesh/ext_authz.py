"""`envoy.service.auth.v3.Authorization/Check`: the route's authentication and authorization filters
(`auth_apikey`, `auth_jwt`, `authz`, the same objects as the proxy's route) decide Envoy's request.

Allowed: OK, with the headers the filters set (`x-turnout-principal`, ...) for Envoy to add and those
they removed for it to remove. Refused: PERMISSION_DENIED (UNAUTHENTICATED for a 401) with the HTTP
status, headers and JSON body the proxy would have answered. A request no route matches is denied
404, as on the proxy. With tracing on, each call is a server span (`call_spans.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from google.rpc import code_pb2, status_pb2

from gateway.core.errors import GatewayError
from gateway.core.filters import Response
from gateway.mesh.call_spans import CHECK, call_metadata, end_call_span, open_call_span
from gateway.mesh.envoy_messages import header_option, http_status
from gateway.mesh.exchange import MeshExchange, error_response

if TYPE_CHECKING:
    from gateway.runtime import Runtime

# The filter kinds (their config keys) that decide access.
AUTH_FILTERS = frozenset({"auth_apikey", "auth_jwt", "authz"})


def request_pairs(http: Any) -> list[tuple[str, str]]:
    """Envoy's `AttributeContext.HttpRequest` as the header list the exchange reads."""
    target = f"{http.path}?{http.query}" if http.query and "?" not in http.path else http.path
    pairs = [(":method", http.method), (":path", target or "/"), (":authority", http.host)]
    pairs.extend((name, value) for name, value in http.headers.items() if not name.startswith(":"))
    return pairs


def denied(answer: Response) -> Any:
    code = code_pb2.UNAUTHENTICATED if answer.status == 401 else code_pb2.PERMISSION_DENIED
    return pb.CheckResponse(
        status=status_pb2.Status(code=code),
        denied_response=pb.DeniedHttpResponse(
            status=http_status(answer.status),
            headers=[header_option(name, value) for name, value in answer.headers],
            body=(answer.body or b"").decode("utf-8", "replace"),
        ),
    )


class Authorization(pb_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # gRPC's name
        attributes = request.attributes
        client_ip = attributes.source.address.socket_address.address
        runtime = self._runtime()
        try:
            exchange = MeshExchange.from_headers(runtime, request_pairs(attributes.request.http), client_ip)
        except GatewayError as error:  # a path with no normal form
            return denied(error_response(error))
        ctx = exchange.ctx
        trace = open_call_span(runtime, ctx, CHECK, call_metadata(context))
        ctx.status = 500  # unless the filters answer
        try:
            try:
                answer = await exchange.run_filters(AUTH_FILTERS)
            except GatewayError as error:
                answer = exchange.refused(error)
            ctx.status = 200 if answer is None else answer.status
        finally:
            end_call_span(trace, ctx)
        if answer is not None:
            return denied(answer)
        sent = exchange.sent_headers
        edited = exchange.ctx.headers
        return pb.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=pb.OkHttpResponse(
                headers=[header_option(n, v) for n, v in edited.items() if sent.get(n) != v],
                headers_to_remove=[name for name in sent if name not in edited],
            ),
        )

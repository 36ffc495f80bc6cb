"""gRPC calls counted by service, method and status code, on the gateway's own registry.

The route metrics already count every call (under its HTTP-equivalent status) with its duration;
this family adds what only gRPC has: the service and method, and the code the client got. A call no
route took is counted with empty service and method, so a client cannot grow the label set by
calling made-up paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    import grpc

    from gateway.mesh.exchange import MeshExchange


class GrpcMetrics:
    __slots__ = ("calls",)

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "turnout_grpc_calls",
            "gRPC calls through the front door, by service, method and the status code sent",
            ("service", "method", "code"),
            registry=registry,
        )

    def record(self, exchange: MeshExchange, code: grpc.StatusCode) -> None:
        service = method = ""
        if exchange.route is not None:
            service, _, method = exchange.ctx.path[1:].partition("/")
        self.calls.labels(service, method, code.name).inc()

"""gRPC calls counted by service, method and status code, on the gateway's own registry.

The route metrics already count every call (under its HTTP-equivalent status) with its duration;
this family adds what only gRPC has: the service and method, and the code the client got. A call no
route took is counted with empty service and method, so a client cannot grow the label set by
calling made-up paths.

A call's counter is looked up by (path, code) in a dict of its own: prometheus_client's `labels()`
takes a lock and builds the label tuple on every call, which was a tenth of the relay's own CPU per
call. The dict holds one entry per counter child, so it grows exactly as the metric does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    import grpc

    from gateway.mesh.exchange import MeshExchange


class GrpcMetrics:
    __slots__ = ("_children", "calls")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "turnout_grpc_calls",
            "gRPC calls through the front door, by service, method and the status code sent",
            ("service", "method", "code"),
            registry=registry,
        )
        self._children: dict[tuple[str, grpc.StatusCode], Any] = {}

    def record(self, exchange: MeshExchange, code: grpc.StatusCode) -> None:
        path = exchange.ctx.path if exchange.route is not None else ""
        child = self._children.get((path, code))
        if child is None:
            service, _, method = path[1:].partition("/")
            child = self.calls.labels(service, method, code.name)
            self._children[(path, code)] = child
        child.inc()

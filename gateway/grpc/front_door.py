"""The gRPC listener: HTTP/2 cleartext with prior knowledge (as gRPC clients connect) on
`listen.grpc_port`, every call to any service handed to the relay.

grpcio's server does the HTTP/2 work (framing, HPACK, flow control, max concurrent streams, message
size limits answered RESOURCE_EXHAUSTED, keep-alive pings, GOAWAY on stop); a generic handler takes
every method path, so no service needs to be known in advance. Why grpcio and not the `h2` state
machine on the gateway's own transports: docs/grpc.md. Opened after the runtime and closed before
it (`gateway.server.Gateway`); calls read the current runtime, so a reload applies to the next call
while calls in flight keep theirs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from gateway.grpc.call import UNARY_METHODS
from gateway.grpc.channels import UpstreamChannels
from gateway.grpc.metrics import GrpcMetrics
from gateway.grpc.relay import Relay
from gateway.grpc.tls import PeerSubjects

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gateway.runtime import Runtime

log = logging.getLogger("turnout.grpc")

# The most calls one client connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS);
# Envoy's default is 2^31 - 1, which lets one client take every slot; 1024 is ample for a pooled
# client and bounds what one connection can hold.
MAX_CONCURRENT_STREAMS = 1024
# Keep-alive pings to clients, so a peer that vanished without closing is found and its calls
# freed: once a minute (the listener's idle timeout's default), and a peer that has not answered a
# ping within 20 s (several round trips over any real network) is taken as gone.
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000


class _AnyMethod(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio is untyped
    """Routes every method path to the relay: unary OIP v2 methods to its unary handler, all else to
    its stream handler."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        path: str = handler_call_details.method
        if path in UNARY_METHODS:
            return grpc.unary_unary_rpc_method_handler(functools.partial(self._relay.unary, path))
        return grpc.stream_stream_rpc_method_handler(functools.partial(self._relay.stream, path))


class GrpcFrontDoor:
    def __init__(
        self,
        runtime: Callable[[], Runtime],
        max_message_bytes: int,
        registry: CollectorRegistry,
        *,
        client_certificates: bool = False,
    ) -> None:
        """`client_certificates`: the port's TLS verifies client certificates (`listen.tls`)."""
        self._subjects = PeerSubjects() if client_certificates else None
        self._runtime = runtime
        self._metrics = GrpcMetrics(registry)
        self._max_message_bytes = max_message_bytes
        self.channels = UpstreamChannels(max_message_bytes)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        """`reuse_port`: the port is shared with sibling processes (the supervisor's workers);
        `credentials`: serve TLS (`gateway/grpc/tls.py`), else HTTP/2 cleartext."""
        server = grpc.aio.server(
            handlers=[_AnyMethod(Relay(self._runtime, self.channels, self._metrics, self._subjects))],
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", self._max_message_bytes),
                ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
                ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                # Only SO_REUSEPORT when asked: otherwise a port taken is an error, not a silent share.
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ],
        )
        bind = f"[{host}]" if ":" in host else host
        try:
            address = f"{bind}:{port}"
            if credentials is not None:
                self.port = server.add_secure_port(address, credentials)
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio's way of saying the port is taken
            raise OSError(f"gRPC: cannot listen on {host}:{port}: {exc}") from exc
        await server.start()
        self._server = server
        log.info("gRPC front door on %s:%d", host, self.port)

    async def stop(self, grace: float) -> None:
        """Stop taking calls (GOAWAY), let calls in flight finish for up to `grace` seconds, then
        close the upstream channels."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace)
        await self.channels.close()

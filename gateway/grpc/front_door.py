"""The gRPC listeners: every call to any service handed to the relay. It takes the HTTP/2
connections of the gateway's main port (handed over by the HTTP/1.1 listener, `take`) and serves
them on the gateway's own HTTP/2 transport (`h2_front.py`, `listen.grpc_transport: native`) or
splices them to a private loopback port of grpcio's (`splice.py`), and, when set, those of
`listen.grpc_port` (HTTP/2 cleartext with prior knowledge, as gRPC clients connect, or TLS).

On grpcio's servers, grpcio does the HTTP/2 work (framing, HPACK, flow control, max concurrent
streams, message size limits answered RESOURCE_EXHAUSTED, keep-alive pings, GOAWAY on stop); a
generic handler takes every method path, so no service needs to be known in advance. Why the main
port defaults to a transport of its own: docs/grpc.md. Opened after the runtime and closed before
it (`gateway.server.Gateway`); calls read the current runtime, so a reload applies to the next call
while calls in flight keep theirs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from gateway.grpc.call import UNARY_METHODS
from gateway.grpc.channels import UpstreamChannels
from gateway.grpc.h2_front import MAX_HEADER_LIST, NativeFront
from gateway.grpc.metrics import GrpcMetrics
from gateway.grpc.oip_infer import InferStage
from gateway.grpc.relay import Relay
from gateway.grpc.splice import PRIVATE_HOST, SplicedSubjects, Splices, spliced_stream, spliced_unary
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


class _SplicedMethod(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio is untyped
    """`_AnyMethod` for the private port: the relay sees the client behind the pair as the peer."""

    def __init__(self, relay: Relay, splices: Splices) -> None:
        self._relay = relay
        self._splices = splices

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        path: str = handler_call_details.method
        if path in UNARY_METHODS:
            return grpc.unary_unary_rpc_method_handler(
                functools.partial(spliced_unary, self._relay, self._splices, path)
            )
        return grpc.stream_stream_rpc_method_handler(
            functools.partial(spliced_stream, self._relay, self._splices, path)
        )


class GrpcFrontDoor:
    def __init__(
        self,
        runtime: Callable[[], Runtime],
        max_message_bytes: int,
        registry: CollectorRegistry,
        *,
        client_certificates: bool = False,
        max_header_bytes: int = MAX_HEADER_LIST,
    ) -> None:
        """`client_certificates`: the port's TLS verifies client certificates (`listen.tls`).
        `max_header_bytes`: the request metadata a call may carry (`listen.max_header_bytes`, as for
        HTTP/1.1 requests); a call over it is answered RESOURCE_EXHAUSTED."""
        self._max_header_bytes = max_header_bytes
        self._subjects = PeerSubjects() if client_certificates else None
        self._runtime = runtime
        self._metrics = GrpcMetrics(registry)
        self._max_message_bytes = max_message_bytes
        self.channels = UpstreamChannels(max_message_bytes)
        # Validation and batching of ModelInfer calls, one for both relays: one set of batch queues.
        self._infer = InferStage(runtime, self.channels)
        self._server: grpc.aio.Server | None = None
        self._private: grpc.aio.Server | None = None
        self.splices = Splices()
        """The main port's HTTP/2 connections spliced to grpcio."""
        self.native: NativeFront | None = None
        """The main port's HTTP/2 connections served on the own transport (`start_spliced`'s
        `native`)."""
        self.port = 0
        """`listen.grpc_port` as bound (0 without one)."""

    def _new_server(self, handler: grpc.GenericRpcHandler, reuse_port: bool) -> grpc.aio.Server:
        return grpc.aio.server(
            handlers=[handler],
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", self._max_message_bytes),
                # Both of grpcio's limits: between a lower soft one and the hard one it refuses
                # calls at random.
                ("grpc.max_metadata_size", self._max_header_bytes),
                ("grpc.absolute_max_metadata_size", self._max_header_bytes),
                ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
                ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                # Only SO_REUSEPORT when asked: otherwise a port taken is an error, not a silent share.
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ],
        )

    async def start_spliced(self, *, client_certificates: bool = False, native: bool = False) -> None:
        """Serve the main port's HTTP/2 connections (`take` them): on the gateway's own HTTP/2
        transport when `native` (`h2_front.py`), else spliced to a private loopback listener of
        grpcio's, started at the first such connection. `client_certificates`: the main port
        verifies client certificates, whose subjects become `ctx.tls_subject`."""
        if native:
            subjects = SplicedSubjects() if client_certificates else None
            relay = Relay(self._runtime, self.channels, self._metrics, subjects, self._infer)
            self.native = NativeFront(relay, self._max_message_bytes, max_header_list=self._max_header_bytes)
        self.splices.open_lazily(functools.partial(self._open_private, client_certificates))

    def take(
        self, transport: asyncio.Transport, first: bytes, client_ip: str, tls_subject: str | None
    ) -> None:
        """The listener's `h2` callback: an HTTP/2 connection of the main port."""
        if self.native is not None:
            self.native.take(transport, first, client_ip, tls_subject)
        else:
            self.splices.take(transport, first, client_ip, tls_subject)

    async def _open_private(self, client_certificates: bool) -> int:
        subjects = SplicedSubjects() if client_certificates else None
        relay = Relay(self._runtime, self.channels, self._metrics, subjects, self._infer)
        server = self._new_server(_SplicedMethod(relay, self.splices), reuse_port=False)
        port = int(server.add_insecure_port(f"{PRIVATE_HOST}:0"))
        await server.start()
        self._private = server
        self.splices.open(port)
        return port

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
        relay = Relay(self._runtime, self.channels, self._metrics, self._subjects, self._infer)
        server = self._new_server(_AnyMethod(relay), reuse_port)
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
        """Stop taking calls (GOAWAY on both listeners), let calls in flight finish for up to
        `grace` seconds, then close what is left of the spliced connections and the upstream
        channels."""
        await self.splices.refuse_new()  # a private listener being opened is open before it stops
        servers = [server for server in (self._server, self._private) if server is not None]
        self._server = self._private = None
        stopping = [server.stop(grace) for server in servers]
        if self.native is not None:
            stopping.append(self.native.stop(grace))
        await asyncio.gather(*stopping)
        self.splices.close()
        await self._infer.close()  # batches still queued go out before the channels close
        await self.channels.close()

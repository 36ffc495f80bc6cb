"""The mesh's gRPC server: ext_proc, ext_authz, RLS and ADS on one port, for one gateway.

Every service reads the gateway's current runtime (`runtime()`), so the mesh decides with the same
router, filters, clusters and experiment splits as the gateway's own listener, and follows reloads.
Opened after the runtime and closed before it (`gateway.server.Gateway`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from gateway.mesh.ads import AggregatedDiscovery
from gateway.mesh.calls import call_handlers
from gateway.mesh.ext_authz import Authorization
from gateway.mesh.ext_proc import BodyModes, ExternalProcessor, serialized
from gateway.mesh.front import MeshFront
from gateway.mesh.rls import RateLimitService
from gateway.mesh.snapshots import XdsSnapshots

if TYPE_CHECKING:
    from gateway.config.models.mesh import MeshConfig
    from gateway.runtime import Runtime

log = logging.getLogger("turnout.mesh")

# Streams still open at shutdown (xDS clients hold theirs forever) get this long to end by
# themselves before they are cancelled.
SHUTDOWN_GRACE_S = 1.0
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
# Room in one gRPC message for Envoy's description of a body (headers, field tags) beyond the body.
MESSAGE_OVERHEAD = 64 << 10


class MeshServer:
    def __init__(self, config: MeshConfig, runtime: Callable[[], Runtime]) -> None:
        self.config = config
        self._runtime = runtime
        self.snapshots = XdsSnapshots(runtime)
        self._server: grpc.aio.Server | None = None
        self._front: asyncio.Server | None = None
        self._connections: set[MeshFront] = set()
        self._grpc_port = 0
        self.port = 0

    async def start(self) -> None:
        config = self.config
        server = grpc.aio.server()
        body_modes = BodyModes.of(config.request_body, config.response_body)
        delegated = frozenset(config.delegated_filters)
        processor = ExternalProcessor(self._runtime, body_modes, config.max_body_bytes, delegated)
        process = grpc.stream_stream_rpc_method_handler(
            processor.Process,
            request_deserializer=external_processor_pb2.ProcessingRequest.FromString,
            response_serializer=serialized,  # a forward decision comes encoded already
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(EXT_PROC_SERVICE, {"Process": process}),)
        )
        authorization = Authorization(self._runtime)
        rate_limits = RateLimitService(self._runtime)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authorization, server)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(rate_limits, server)
        discovery = AggregatedDiscovery(self.snapshots)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(discovery, server)
        # grpcio serves every service on a loopback port of its own; the mesh port serves ext_proc
        # connections itself and splices the others there (front.py).
        self._grpc_port = server.add_insecure_port("127.0.0.1:0")
        handlers = call_handlers(
            self._runtime,
            body_modes,
            config.max_body_bytes,
            delegated,
            authorization.Check,
            rate_limits.ShouldRateLimit,
            discovery,
        )
        # A gRPC message may carry the largest body and Envoy's description around it.
        max_message = config.max_body_bytes + MESSAGE_OVERHEAD
        connections = self._connections
        loop = asyncio.get_running_loop()
        try:
            self._front = await loop.create_server(
                lambda: MeshFront(handlers, max_message, self._grpc_address, connections),
                config.host,
                config.port,
                reuse_address=True,
            )
        except OSError as exc:
            raise OSError(f"mesh: cannot listen on {config.host}:{config.port}: {exc}") from exc
        self.port = self._front.sockets[0].getsockname()[1]
        await self.snapshots.start()
        await server.start()
        self._server = server
        log.info("mesh (ext_proc, ext_authz, rls, ads) on %s:%d", config.host, self.port)

    def _grpc_address(self) -> tuple[str, int]:
        return "127.0.0.1", self._grpc_port

    async def stop(self) -> None:
        if self._front is not None:
            self._front.close()
            for connection in list(self._connections):
                connection.close()
            self._front = None
        if self._server is not None:
            await self._server.stop(SHUTDOWN_GRACE_S)
            self._server = None
        await self.snapshots.stop()

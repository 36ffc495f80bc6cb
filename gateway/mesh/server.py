"""The mesh's gRPC server: ext_proc, ext_authz, RLS and ADS on one port, for one gateway.

Every service reads the gateway's current runtime (`runtime()`), so the mesh decides with the same
router, filters, clusters and experiment splits as the gateway's own listener, and follows reloads.
Opened after the runtime and closed before it (`gateway.server.Gateway`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from gateway.mesh.ads import AggregatedDiscovery
from gateway.mesh.ext_authz import Authorization
from gateway.mesh.ext_proc import ExternalProcessor
from gateway.mesh.rls import RateLimitService
from gateway.mesh.snapshots import XdsSnapshots

if TYPE_CHECKING:
    from gateway.config.models.mesh import MeshConfig
    from gateway.runtime import Runtime

log = logging.getLogger("turnout.mesh")

# Streams still open at shutdown (xDS clients hold theirs forever) get this long to end by
# themselves before they are cancelled.
SHUTDOWN_GRACE_S = 1.0


class MeshServer:
    def __init__(self, config: MeshConfig, runtime: Callable[[], Runtime]) -> None:
        self.config = config
        self._runtime = runtime
        self.snapshots = XdsSnapshots(runtime)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        config = self.config
        server = grpc.aio.server()
        external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(
            ExternalProcessor(
                self._runtime,
                dict(config.request_body),
                config.max_body_bytes,
                frozenset(config.delegated_filters),
            ),
            server,
        )
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Authorization(self._runtime), server)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(RateLimitService(self._runtime), server)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
            AggregatedDiscovery(self.snapshots), server
        )
        host = f"[{config.host}]" if ":" in config.host else config.host
        try:
            self.port = server.add_insecure_port(f"{host}:{config.port}")
        except RuntimeError as exc:  # grpcio's way of saying the port is taken
            raise OSError(f"mesh: cannot listen on {config.host}:{config.port}: {exc}") from exc
        await self.snapshots.start()
        await server.start()
        self._server = server
        log.info("mesh (ext_proc, ext_authz, rls, ads) on %s:%d", config.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(SHUTDOWN_GRACE_S)
            self._server = None
        await self.snapshots.stop()

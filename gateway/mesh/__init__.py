"""turnout beside Envoy: Envoy carries the bytes, turnout decides (docs/mesh.md).

One port (`server.py`) serves four of Envoy's APIs, every answer coming from the running config's
router, filters, clusters and experiment splits, the same objects the proxy uses:

    ext_proc.py    ExternalProcessor/Process: filters, experiment arm and endpoint per request;
                   ext_proc_answer.py its answer's half (response phase, gRPC outcome)
    ext_authz.py   Authorization/Check: the route's authentication and authorization filters
    rls.py         RateLimitService/ShouldRateLimit: the route's rate-limit filters
    ads.py         AggregatedDiscoveryService: clusters, endpoints, routes and splits as xDS

`front.py` takes the port's connections: one that opens with a per-request API (ext_proc,
ext_authz, RLS) is served by `http2.py`, a small HTTP/2 gRPC transport, with `calls.py`; one that
opens with ADS is spliced to grpcio, which serves every service on a loopback port. `exchange.py`
is one request's decision (the mesh's ProxyRequest), `envoy_messages.py` the
translation to Envoy's messages, `xds_resources.py` and `snapshots.py` the exported resources.
Envoy's message classes and grpcio come with the `mesh` extra and load only when a config has a
`mesh:` section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.core.extras import MissingExtra, require_extra

if TYPE_CHECKING:
    from gateway.config.models.mesh import MeshConfig
    from gateway.mesh.server import MeshServer
    from gateway.runtime import Runtime


def open_mesh(config: MeshConfig, runtime: Callable[[], Runtime]) -> MeshServer:
    """The mesh server for `config` (not started); OSError naming the extra when it is missing."""
    try:
        require_extra("mesh", "the mesh section", ("grpc", "envoy.service.ext_proc.v3", "hpack"))
    except MissingExtra as exc:
        raise OSError(str(exc)) from exc
    from gateway.mesh.server import MeshServer

    return MeshServer(config, runtime)

"""Where endpoints that came after the config serve gRPC.

An endpoint added through the admin API with a `grpc_port`, and a worker a pool announces with a
gRPC address (`routing/discovery/pool_file.py`), serve gRPC elsewhere than at their HTTP address,
as a config entry's `grpc_port` says for its endpoint (`routing/grpc_address.py`). These change
while the config stays: after each change the gateway gathers them per cluster, gives each
cluster's gRPC health checker its own, and puts them all in the data path's map. A pool's
announce file is read in the background, so each pool calls back when its gRPC addresses change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from routing.discovery.pool_file import PoolFileDiscovery
from routing.discovery.static import parse_address
from routing.grpc_address import join_host_port
from routing.health.grpc_check import GrpcHealthChecker

if TYPE_CHECKING:
    from gateway.runtime import Runtime

Registered = Mapping[str, Mapping[str, tuple[int, int | None]]]
"""cluster -> address -> (weight, grpc_port): the endpoints added through the admin API."""


def apply_added_grpc_addresses(
    runtime: Runtime, registered: Registered, on_pool_change: Callable[[], None]
) -> dict[str, str]:
    """Give each cluster's gRPC health checker the gRPC addresses of its added endpoints, and have
    its pools call `on_pool_change` when theirs change; the gateway-wide map for the data path."""
    everything: dict[str, str] = {}
    for name, cluster in runtime.clusters.items():
        added: dict[str, str] = {}
        for task in cluster.background:
            if isinstance(task, PoolFileDiscovery):
                task.on_grpc_change = on_pool_change
                added.update(task.grpc_addresses)
        for address, (_, grpc_port) in registered.get(name, {}).items():
            if grpc_port is not None:  # the operator's word, the later one, wins over a pool's
                host, port = parse_address(address)
                added[join_host_port(host, port)] = join_host_port(host, grpc_port)
        for task in cluster.background:
            if isinstance(task, GrpcHealthChecker):
                task.addresses.set_added(added)
        everything.update(added)
    return everything

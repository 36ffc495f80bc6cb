"""Pool discovery reads each announced worker's gRPC address, and says when they change."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from routing.balancers import make_balancer_factory
from routing.discovery.pool_file import PoolFileDiscovery
from routing.endpoint_set import EndpointSet


def _announce(path: Path, entries: list[tuple[str, str | None]], stamp: int) -> None:
    workers = [{"address": address, "grpc": grpc, "ready": True} for address, grpc in entries]
    path.write_bytes(orjson.dumps({"endpoints": workers}))
    os.utime(path, (stamp, stamp))  # a distinct mtime per write, as a real rewrite would have


def test_announced_grpc_addresses_are_kept_by_http_address(tmp_path: Path) -> None:
    endpoints = EndpointSet("pool", [], make_balancer_factory("round_robin"))
    path = tmp_path / "pool.json"
    discovery = PoolFileDiscovery(endpoints, path)
    changes: list[dict[str, str]] = []
    discovery.on_grpc_change = lambda: changes.append(dict(discovery.grpc_addresses))
    _announce(
        path,
        [
            ("127.0.0.1:8001", "127.0.0.1:9001"),
            ("127.0.0.1:8002", None),  # gRPC, if any, at its address
            ("127.0.0.1:8003", "127.0.0.1:8003"),  # the same address: nothing to map
            ("127.0.0.1:8004", "not an address"),  # kept for HTTP, without a gRPC address
            ("[::1]:8005", "[::1]:9005"),
        ],
        1_000,
    )
    assert discovery.sync() is True
    expected = {"127.0.0.1:8001": "127.0.0.1:9001", "[::1]:8005": "[::1]:9005"}
    assert discovery.grpc_addresses == expected
    assert len(endpoints.endpoints) == 5
    assert changes == [expected]
    # the same gRPC addresses in a rewritten file: no call
    _announce(path, [("127.0.0.1:8001", "127.0.0.1:9001"), ("[::1]:8005", "[::1]:9005")], 2_000)
    assert discovery.sync() is True
    assert changes == [expected]
    _announce(path, [("127.0.0.1:8001", "127.0.0.1:9101")], 3_000)
    discovery.sync()
    assert changes[-1] == {"127.0.0.1:8001": "127.0.0.1:9101"}

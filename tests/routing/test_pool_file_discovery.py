"""Pool discovery follows a worker pool's announce file."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from routing.balancers import make_balancer_factory
from routing.discovery.pool_file import PoolFileDiscovery
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint


def _announce(path: Path, entries: list[tuple[str, bool]], stamp: int) -> None:
    path.write_bytes(orjson.dumps({"endpoints": [{"address": a, "ready": r} for a, r in entries]}))
    os.utime(path, (stamp, stamp))  # a distinct mtime per write, as a real rewrite would have


def test_ready_workers_become_members_and_others_stay(tmp_path: Path) -> None:
    static = Endpoint("127.0.0.1", 9000)
    endpoints = EndpointSet("pool", [static], make_balancer_factory("round_robin"))
    path = tmp_path / "pool.json"
    discovery = PoolFileDiscovery(endpoints, path)
    assert discovery.sync() is False  # no file yet: nothing changes
    _announce(path, [("127.0.0.1:8001", True), ("127.0.0.1:8002", False)], 1_000)
    assert discovery.sync() is True
    assert {e.address for e in endpoints.endpoints} == {"127.0.0.1:9000", "127.0.0.1:8001"}
    first = endpoints.get("127.0.0.1:8001")
    assert first is not None
    first.inflight = 3
    _announce(path, [("127.0.0.1:8001", True), ("127.0.0.1:8002", True)], 2_000)
    assert discovery.sync() is True
    assert {e.address for e in endpoints.endpoints} == {"127.0.0.1:9000", "127.0.0.1:8001", "127.0.0.1:8002"}
    assert endpoints.get("127.0.0.1:8001") is first  # state kept across updates
    _announce(path, [("127.0.0.1:8002", True)], 3_000)
    discovery.sync()
    assert {e.address for e in endpoints.endpoints} == {"127.0.0.1:9000", "127.0.0.1:8002"}


def test_a_broken_file_keeps_the_last_known_members(tmp_path: Path) -> None:
    endpoints = EndpointSet("pool", [], make_balancer_factory("round_robin"))
    path = tmp_path / "pool.json"
    discovery = PoolFileDiscovery(endpoints, path)
    _announce(path, [("127.0.0.1:8001", True)], 1_000)
    discovery.sync()
    path.write_text("{not json")
    os.utime(path, (2_000, 2_000))
    assert discovery.sync() is False
    assert [e.address for e in endpoints.endpoints] == ["127.0.0.1:8001"]
    assert endpoints.pick(None) is not None

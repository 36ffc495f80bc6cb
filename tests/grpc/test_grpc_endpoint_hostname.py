"""An endpoint's `grpc_port` beside a host name: gRPC calls and gRPC health checks go to each
address the name resolves to, on that port; a bad `grpc_port` is refused where it is written."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import grpc
import pytest

from gateway.config import ConfigError
from gateway.config.loader import load_config_text
from routing.endpoints import Endpoint
from routing.grpc_address import GrpcAddresses, grpc_addresses, join_host_port
from routing.health.grpc_check import CHECK_METHOD
from tests.conftest import gateway_config
from tests.grpc.grpc_upstreams import Upstream
from tests.support.processes import free_port, wait_until

_CONFIG = """\
routes:
  - {{match: {{prefix: /}}, backend: {{cluster: up}}}}
clusters:
  up:
    endpoints:
      - 127.0.0.1:9101
      - {{address: "localhost:9103", grpc_port: {grpc_port}}}
"""


class _Serving(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio is untyped
    """grpc.health.v1 Check answered SERVING, beside the upstream's own services."""

    def __init__(self) -> None:
        self.asked = 0

    async def _check(self, request: bytes, context: Any) -> bytes:
        self.asked += 1
        return b"\x08\x01"

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        if details.method == CHECK_METHOD:
            return grpc.unary_unary_rpc_method_handler(self._check)
        return None


def _localhost_addresses() -> set[str]:
    """What `localhost` resolves to here, as the gateway's DNS discovery sees it."""
    infos = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)
    return {str(info[4][0]) for info in infos}


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("9103", "grpc_port 9103 is the port of address localhost:9103"),
        ("0", "must be at least 1"),
        ("70000", "must be at most 65535"),
        ("nine", "expected a whole number"),
        ("[9104]", "expected a whole number"),
    ],
)
def test_a_bad_grpc_port_is_refused_at_its_file_line_and_field(given: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config_text(_CONFIG.format(grpc_port=given), "gateway.yaml")
    assert f"gateway.yaml:7: clusters.up.endpoints[1].grpc_port: {complaint}" in str(refused.value)


def test_a_grpc_port_keeps_the_host_and_replaces_the_port() -> None:
    config = load_config_text(_CONFIG.format(grpc_port=9104), "gateway.yaml")
    assert [(e.address, e.grpc_port) for e in config.clusters["up"].endpoints] == [
        ("127.0.0.1:9101", None),
        ("localhost:9103", 9104),
    ]
    known = {
        endpoint.address: endpoint
        for endpoint in (
            Endpoint("10.0.0.1", 80),
            Endpoint("::1", 80),
            Endpoint("10.0.0.7", 9103, hostname="api.local"),
            Endpoint("fd00::7", 9103, hostname="api.local"),
            Endpoint("10.0.0.8", 9000, hostname="other.local"),
        )
    }
    ports = {("10.0.0.1", 80): 81, ("::1", 80): 81, ("api.local", 9103): 9104}
    addresses = GrpcAddresses(ports, known.get)
    # IP entries as written, IPv6 in brackets; a name's resolved addresses on the name's grpc_port
    assert addresses.get("10.0.0.1:80", "10.0.0.1:80") == "10.0.0.1:81"
    assert addresses.get("[::1]:80", "[::1]:80") == "[::1]:81"
    assert addresses.get("10.0.0.7:9103", "10.0.0.7:9103") == "10.0.0.7:9104"
    assert addresses.get("[fd00::7]:9103", "[fd00::7]:9103") == "[fd00::7]:9104"
    assert addresses.of(known["[fd00::7]:9103"]) == "[fd00::7]:9104"
    # a resolved name without a grpc_port, and an address no endpoint set holds, keep their address
    assert addresses.get("10.0.0.8:9000", "10.0.0.8:9000") == "10.0.0.8:9000"
    assert addresses.get("10.9.9.9:1", "10.9.9.9:1") == "10.9.9.9:1"
    assert addresses.get("10.9.9.9:1") is None
    # IP entries alone need no resolving: the data path gets a plain dict
    plain = grpc_addresses({("10.0.0.1", 80): 81, ("::1", 80): 81}, known.get)
    assert type(plain) is dict and plain == {"10.0.0.1:80": "10.0.0.1:81", "[::1]:80": "[::1]:81"}
    assert isinstance(grpc_addresses(ports, known.get), GrpcAddresses)


async def test_calls_and_health_checks_reach_a_host_names_grpc_port(make_gateway: Any) -> None:
    upstream = Upstream("named")
    serving = _Serving()
    upstream.server.add_generic_rpc_handlers((serving,))
    if "::1" in _localhost_addresses():  # so every address the name resolves to answers
        with contextlib.suppress(RuntimeError):
            upstream.server.add_insecure_port(f"[::1]:{upstream.port}")
    # Nothing listens on the HTTP port: only the gRPC port can answer the checks and the calls.
    http_port = free_port()
    config = gateway_config(
        [],
        cluster={
            "endpoints": [{"address": f"localhost:{http_port}", "grpc_port": upstream.port}],
            "health": {
                "type": "grpc",
                "interval": "100ms",
                "timeout": "2s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
            },
        },
        routes=[{"name": "echo", "match": {"grpc_service": "test.Echo"}, "backend": {"cluster": "up"}}],
    )
    async with upstream, make_gateway(config) as gw:
        endpoints = gw.runtime.clusters["up"].endpoints
        resolved = {join_host_port(host, http_port) for host in _localhost_addresses()}
        assert {endpoint.address for endpoint in endpoints.endpoints} == resolved
        assert all(endpoint.hostname == "localhost" for endpoint in endpoints.endpoints)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel:
            unary = channel.unary_unary("/test.Echo/Unary")
            assert [await unary(b"hi") for _ in range(4)] == [b"echo:hi"] * 4
            # the checks (every 100 ms) reach the gRPC port, and find the endpoints healthy there
            # (nothing answers at their HTTP port); once the upstream stops, unhealthy
            await asyncio.to_thread(wait_until, lambda: serving.asked >= 3 * len(resolved), 10)
            assert all(endpoint.active_healthy for endpoint in endpoints.endpoints)
            await upstream.server.stop(None)
            await asyncio.to_thread(
                wait_until, lambda: not any(e.active_healthy for e in endpoints.endpoints), 10
            )

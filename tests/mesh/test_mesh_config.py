"""The `mesh:` section: located errors, and what its options change in the decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.route.v3 import route_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from gateway.config import ConfigError
from gateway.loading import load_gateway_config
from gateway.mesh.xds_resources import ENVOY_ROUTE_CONFIG, ROUTE
from tests.mesh.mesh_support import mesh_config, request_headers
from tests.mesh.test_mesh_authz_rls import OK, OVER_LIMIT, limit_request


def load(tmp_path: Path, document: dict[str, Any]) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_gateway_config(path)


@pytest.mark.parametrize(
    ("mesh", "expected"),
    [
        ({"request_body": {"nope": "buffered"}}, "mesh.request_body.nope: unknown route 'nope'"),
        ({"request_body": {"risk": "sometimes"}}, "mesh.request_body.risk"),
        ({"port": "LISTEN"}, "is also listen.port on the same address"),
        ({"colour": 1}, "mesh.colour"),
    ],
    ids=["unknown-route", "bad-mode", "port-clash", "unknown-option"],
)
def test_mesh_section_errors_are_located(tmp_path: Path, mesh: dict[str, Any], expected: str) -> None:
    document = mesh_config(tmp_path)
    if mesh.get("port") == "LISTEN":
        mesh = {"port": document["listen"]["port"]}
    document["mesh"].update(mesh)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, document)
    assert expected in str(caught.value)
    assert ".yaml:" in str(caught.value)  # located: file and line


def test_mesh_needs_a_single_process(tmp_path: Path) -> None:
    document = mesh_config(tmp_path)
    document["processes"] = 2
    with pytest.raises(ConfigError, match="single process"):
        load(tmp_path, document)


async def test_delegated_filters_are_skipped_by_ext_proc(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path, delegated_filters=["auth_apikey", "rate_limit"])
    async with (
        make_gateway(config) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        stub = ext_proc_grpc.ExternalProcessorStub(channel)
        for _ in range(5):  # no key, past the burst: Envoy's ext_authz and RLS decide those
            call = stub.Process()
            await call.write(request_headers("/limited/v2/models/x/infer"))
            assert (await call.read()).WhichOneof("response") == "request_headers"
            await call.done_writing()
        # RLS names the route in the descriptor (as the exported Envoy routes do): the domain is free.
        should = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit
        codes = [
            (
                await should(limit_request("turnout", [("route", "limited"), ("remote_address", "10.1.1.1")]))
            ).overall_code
            for _ in range(4)
        ]
        assert codes == [OK, OK, OK, OVER_LIMIT]


def test_envoy_routes_carry_the_rate_limit_descriptor(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from gateway.mesh.xds_resources import build_resources
    from gateway.observability import GatewayMetrics
    from gateway.runtime import build_runtime

    config = load(tmp_path, mesh_config(tmp_path))
    runtime = build_runtime(
        config, GatewayMetrics(CollectorRegistry()), None, previous=None, base_dir=tmp_path
    )
    envoy = build_resources(runtime, 0.0)[ROUTE][ENVOY_ROUTE_CONFIG]
    assert isinstance(envoy, route_pb2.RouteConfiguration)
    routes = {route.name: route for route in envoy.virtual_hosts[0].routes}
    assert envoy.virtual_hosts[0].routes[0].route.cluster_header == "x-turnout-cluster"
    (limit,) = routes["limited"].route.rate_limits
    assert limit.actions[0].generic_key.descriptor_value == "limited"
    assert limit.actions[1].HasField("remote_address")
    assert routes["limited"].match.prefix == "/limited/"
    assert not routes["checked"].route.rate_limits

"""The examples: config/examples/mesh.yaml keeps its contract and serves it from `turnout run`, and
the Envoy bootstrap parses into envoy-data-plane's Bootstrap with no unknown field."""

from __future__ import annotations

import copy
import importlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from gateway.loading import load_gateway_config
from gateway.mesh.xds_resources import ENDPOINTS, LISTENER, ROUTE
from tests.support.processes import (
    START_TIMEOUT_S,
    Process,
    _spawn,
    free_port,
    http_ok,
    start_gateway,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "config" / "examples" / "mesh.yaml"
ENVOY = ROOT / "config" / "examples" / "envoy" / "envoy.yaml"


def test_mesh_example_keeps_its_contract() -> None:
    config = load_gateway_config(MESH)
    assert config.mesh is not None
    assert (config.mesh.host, config.mesh.port) == ("127.0.0.1", 18000)
    assert (config.listen.port, config.admin.port) == (8180, 9911)
    assert [e.address for e in config.clusters["risk-v1"].endpoints] == ["127.0.0.1:8011"]
    assert [e.address for e in config.clusters["risk-v2"].endpoints] == ["127.0.0.1:8012"]
    risk = next(route for route in config.routes if route.name == "risk")
    assert risk.backend.experiment == "risk-ab"


def _any_types(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if "@type" in value:
            yield value["@type"]
        for item in value.values():
            yield from _any_types(item)
    elif isinstance(value, list):
        for item in value:
            yield from _any_types(item)


def parse_bootstrap(document: dict[str, Any]) -> Any:
    """envoy-data-plane's Bootstrap from the YAML document; its Any fields need their message types
    imported (registered) first. Unknown fields and enum values raise."""
    with warnings.catch_warnings():
        # betterproto2 (under envoy-data-plane) declares validators in a form pydantic deprecates.
        warnings.simplefilter("ignore", DeprecationWarning)
        for type_url in set(_any_types(document)):
            importlib.import_module("envoy_data_plane." + type_url.rsplit("/", 1)[-1].rsplit(".", 1)[0])
        from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    return Bootstrap.from_dict(document)


def test_envoy_bootstrap_parses_and_points_at_the_mesh_port() -> None:
    document = yaml.safe_load(ENVOY.read_text())
    bootstrap = parse_bootstrap(document)
    (turnout,) = bootstrap.static_resources.clusters
    address = turnout.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("127.0.0.1", 18000)
    names = [
        f["name"]
        for f in document["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"
        ]["http_filters"]
    ]
    assert names == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.router",
    ]


def test_envoy_bootstrap_check_refuses_unknown_fields() -> None:
    document = yaml.safe_load(ENVOY.read_text())
    broken = copy.deepcopy(document)
    manager = broken["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager["http_filters"][2]["typed_config"]["processing_mode"]["request_body_mod"] = "BUFFERED"
    with pytest.raises(KeyError, match="request_body_mod"):
        parse_bootstrap(broken)


@pytest.fixture
def mesh_process(tmp_path: Path) -> Iterator[int]:
    """`turnout run` on the example, moved to free ports (the contract's ports may be taken here)."""
    document = yaml.safe_load(MESH.read_text())
    port, listen, admin = free_port(), free_port(), free_port()
    document["listen"]["port"] = listen
    document["admin"]["port"] = admin
    document["mesh"]["port"] = port
    document["state"]["sqlite_path"] = str(tmp_path / "events.db")
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(document))
    gateway = start_gateway(path, listen, admin, tmp_path, ("--no-watch",))  # ready: mesh port open
    try:
        yield port
    finally:
        gateway.stop()


async def test_turnout_run_serves_the_example_over_ads(mesh_process: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_process}") as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["risk"]))
        routes = await call.read()
        config = route_pb2.RouteConfiguration()
        routes.resources[0].Unpack(config)
        clusters = config.virtual_hosts[0].routes[0].route.weighted_clusters.clusters
        assert {c.name: c.weight.value for c in clusters} == {"risk-v1": 5000, "risk-v2": 5000}
        await call.write(
            discovery_pb2.DiscoveryRequest(type_url=ENDPOINTS, resource_names=["risk-v1", "risk-v2"])
        )
        loads = await call.read()
        ports = set()
        for packed in loads.resources:
            assignment = endpoint_pb2.ClusterLoadAssignment()
            packed.Unpack(assignment)
            ports.update(
                e.endpoint.address.socket_address.port_value for e in assignment.endpoints[0].lb_endpoints
            )
        assert ports == {8011, 8012}
        call.cancel()


def test_extproc_command_needs_a_mesh_section(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["extproc", "--config", str(ROOT / "config" / "examples" / "demo.yaml")]) == 1
    assert "no mesh section" in capsys.readouterr().err


async def test_extproc_command_serves_the_mesh(tmp_path: Path) -> None:
    document = yaml.safe_load(MESH.read_text())
    port, admin = free_port(), free_port()
    document["listen"]["port"] = free_port()
    document["admin"]["port"] = admin
    document["mesh"]["port"] = port
    document["state"]["sqlite_path"] = str(tmp_path / "events.db")
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(document))
    process = Process(
        _spawn([sys.executable, "-m", "gateway.cli", "extproc", "--config", str(path)], None), port
    )
    try:
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{admin}/readyz"), START_TIMEOUT_S, message="turnout extproc"
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
            await call.write(discovery_pb2.DiscoveryRequest(type_url=LISTENER))
            listeners = await call.read()
            assert len(listeners.resources) == 2  # the routes limited and risk
            call.cancel()
    finally:
        process.stop()

"""ADS: a real xDS client (grpcio's resolver on xds:///risk) follows turnout's split; raw ADS streams
check ACK, NACK and delta."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from gateway.mesh.xds_resources import CLUSTER, ENDPOINTS, LISTENER, ROUTE
from inference_workers.grpc_gen import open_inference_grpc_pb2 as oip
from inference_workers.grpc_gen import open_inference_grpc_pb2_grpc as oip_grpc
from tests.mesh.mesh_support import mesh_config

ROOT = Path(__file__).resolve().parents[2]


class Worker(oip_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """A model server that says which version it is: enough to see where a call went."""

    def __init__(self, version: str) -> None:
        self.version = version

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # gRPC's name
        return oip.ModelInferResponse(model_name=request.model_name, model_version=self.version)


async def start_worker(version: str) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(Worker(version), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def ab_config(tmp_path: Path, v1: int, v2: int) -> dict[str, Any]:
    config = mesh_config(tmp_path)
    config["clusters"] = {
        "risk-v1": {"endpoints": [f"127.0.0.1:{v1}"]},
        "risk-v2": {"endpoints": [f"127.0.0.1:{v2}"]},
    }
    return config


class Calls:
    """The client process's lines, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[tuple[float, str]] = []

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            stamp, _, outcome = raw.decode().strip().partition(" ")
            self.lines.append((float(stamp), outcome))

    def versions_since(self, since: float) -> Counter[str]:
        return Counter(outcome for stamp, outcome in self.lines if stamp >= since)


async def xds_client(tmp_path: Path, mesh_port: int) -> AsyncIterator[Calls]:
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{mesh_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": "risk-client", "cluster": "tests", "locality": {}},
    }
    path = tmp_path / "xds-bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(path), "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.mesh.xds_client",
        "xds:///risk",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )
    calls = Calls(process)
    reader = asyncio.ensure_future(calls.read())
    try:
        yield calls
    finally:
        process.kill()
        await process.wait()
        reader.cancel()


async def wait_for(calls: Calls, count: int, since: float, timeout: float = 20.0) -> Counter[str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        seen = calls.versions_since(since)
        if sum(seen.values()) >= count:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {calls.versions_since(since)} after {timeout}s")


async def test_proxyless_grpc_client_follows_the_split(make_gateway: Any, tmp_path: Path) -> None:
    workers = [await start_worker("1"), await start_worker("2")]
    try:
        async with make_gateway(ab_config(tmp_path, workers[0][1], workers[1][1])) as gateway:
            clients = xds_client(tmp_path, gateway.mesh.port)
            calls = await clients.__anext__()
            try:
                began = time.time()
                first = await wait_for(calls, 1, began)
                start = max(stamp for stamp, _ in calls.lines)
                seen = await wait_for(calls, 400, start)
                assert "error" not in "".join(first), first
                share = seen["2"] / (seen["1"] + seen["2"])
                assert 0.35 < share < 0.65, seen  # 50/50 weighted clusters
                # The split moves (an operator's new weights): within a second the client follows.
                split = gateway.experiments.splits["risk-ab"]
                split.set_weights({"control": 10, "treatment": 90})
                assert await gateway.experiments.sync.publish(split)  # as the admin API does
                moved_at = time.time()
                deadline = moved_at + 1.0
                while time.time() < deadline + 5:
                    await asyncio.sleep(0.1)
                    recent = calls.versions_since(time.time() - 0.3)
                    if recent and recent["2"] / sum(recent.values()) > 0.8:
                        break
                settled = time.time()
                assert settled - moved_at < 1.5, calls.versions_since(moved_at)
                after = await wait_for(calls, 300, settled)
                assert after["2"] / (after["1"] + after["2"]) > 0.8, after
            finally:
                await clients.aclose()
    finally:
        for server, _ in workers:
            await server.stop(None)


def ads_request(kind: str, names: list[str] = (), nonce: str = "", error: str | None = None) -> Any:  # type: ignore[assignment]
    request = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id="test"), type_url=kind, resource_names=names, response_nonce=nonce
    )
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return request


async def test_sotw_ack_nack_and_updates(
    make_gateway: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        make_gateway(mesh_config(tmp_path)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(ads_request(CLUSTER))
        clusters = await asyncio.wait_for(call.read(), 5)
        assert clusters.type_url == CLUSTER
        assert len(clusters.resources) == 2
        await call.write(ads_request(CLUSTER, nonce=clusters.nonce))  # ACK
        await call.write(ads_request(ROUTE, ["risk"]))
        routes = await asyncio.wait_for(call.read(), 5)
        config = route_pb2.RouteConfiguration()
        routes.resources[0].Unpack(config)
        weights = {
            c.name: c.weight.value for c in config.virtual_hosts[0].routes[0].route.weighted_clusters.clusters
        }
        assert weights == {"risk-v1": 5000, "risk-v2": 5000}
        # A NACK is logged with the client's reason and not answered with the same version again:
        # the next message on the stream is the push of the next change.
        with caplog.at_level("WARNING", logger="turnout.mesh.xds"):
            await call.write(ads_request(ROUTE, ["risk"], nonce=routes.nonce, error="bad weights"))
            for _ in range(50):
                if any("bad weights" in record.getMessage() for record in caplog.records):
                    break
                await asyncio.sleep(0.02)
        assert any("bad weights" in record.getMessage() for record in caplog.records)
        # A change in the split is pushed.
        split = gateway.experiments.splits["risk-ab"]
        split.set_weights({"control": 1, "treatment": 3})
        assert await gateway.experiments.sync.publish(split)  # as the admin API does
        pushed = await asyncio.wait_for(call.read(), 2)
        assert pushed.type_url == ROUTE and pushed.nonce != routes.nonce
        pushed.resources[0].Unpack(config)
        weights = {
            c.name: c.weight.value for c in config.virtual_hosts[0].routes[0].route.weighted_clusters.clusters
        }
        assert weights == {"risk-v1": 2500, "risk-v2": 7500}
        # An unknown type gets an empty answer; the stream keeps working.
        await call.write(ads_request("type.googleapis.com/nothing.Here"))
        empty = await asyncio.wait_for(call.read(), 5)
        assert list(empty.resources) == []
        call.cancel()


async def test_delta_sends_only_what_changed(make_gateway: Any, tmp_path: Path) -> None:
    async with (
        make_gateway(mesh_config(tmp_path)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENER))
        listeners = await asyncio.wait_for(call.read(), 5)
        assert {r.name for r in listeners.resources} == {"limited", "checked", "risk"}
        # A NACK is logged, not answered: the next message is the answer to the next subscription.
        nack = discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENER, response_nonce=listeners.nonce)
        nack.error_detail.CopyFrom(status_pb2.Status(code=3, message="listener refused"))
        await call.write(nack)
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINTS, resource_names_subscribe=["risk-v1"])
        )
        endpoints = await asyncio.wait_for(call.read(), 5)
        assert [r.name for r in endpoints.resources] == ["risk-v1"]
        gateway.runtime.clusters["risk-v1"].endpoints.drain("127.0.0.1:9")
        changed = await asyncio.wait_for(call.read(), 2)
        assert changed.type_url == ENDPOINTS and [r.name for r in changed.resources] == ["risk-v1"]
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINTS, resource_names_unsubscribe=["risk-v1"])
        )
        gateway.runtime.clusters["risk-v1"].endpoints.undrain("127.0.0.1:9")
        await asyncio.sleep(0.3)  # the change is seen, and not sent: nobody subscribes to it
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINTS, resource_names_subscribe=["risk-v2"])
        )
        following = await asyncio.wait_for(call.read(), 5)
        assert [r.name for r in following.resources] == ["risk-v2"]
        assert list(following.removed_resources) == []
        call.cancel()


async def test_canary_steps_and_endpoint_health_are_pushed(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path)
    config["experiments"]["risk-canary"] = {
        "kind": "canary",
        "unit": ["header:x-user-id"],
        "baseline": {"cluster": "risk-v1"},
        "candidate": {"cluster": "risk-v2"},
        "steps": [
            {"percent": 10, "min_duration": "1h"},
            {"percent": 50, "min_duration": "1h"},
            {"percent": 100},
        ],
    }
    config["routes"].insert(
        0, {"name": "canary", "match": {"prefix": "/canary/"}, "backend": {"experiment": "risk-canary"}}
    )
    async with (
        make_gateway(config) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(ads_request(ROUTE, ["canary"]))
        await call.write(ads_request(ENDPOINTS, ["risk-v1"]))
        config_ = route_pb2.RouteConfiguration()
        first: dict[str, Any] = {}
        for _ in range(2):
            answer = await asyncio.wait_for(call.read(), 5)
            first[answer.type_url] = answer

        def weights(answer: Any) -> dict[str, int]:
            answer.resources[0].Unpack(config_)
            clusters = config_.virtual_hosts[0].routes[0].route.weighted_clusters.clusters
            return {c.name: c.weight.value for c in clusters}

        assert weights(first[ROUTE]) == {"risk-v1": 9000, "risk-v2": 1000}
        moved_at = time.monotonic()
        # What the controller does at a step: advance, then publish the state to the store. An
        # unpublished change would be undone by the state-sync poller, which adopts the stored state.
        split = gateway.experiments.splits["risk-canary"]
        split.advance()
        assert await gateway.experiments.sync.publish(split)
        pushed = await asyncio.wait_for(call.read(), 2)
        assert time.monotonic() - moved_at < 1.0
        assert pushed.type_url == ROUTE and weights(pushed) == {"risk-v1": 5000, "risk-v2": 5000}
        # A drained (or failed) endpoint is exported UNHEALTHY.
        gateway.runtime.clusters["risk-v1"].endpoints.drain("127.0.0.1:9")
        pushed = await asyncio.wait_for(call.read(), 2)
        assert pushed.type_url == ENDPOINTS
        assignment = endpoint_pb2.ClusterLoadAssignment()
        pushed.resources[0].Unpack(assignment)
        health = {
            e.endpoint.address.socket_address.address: e.health_status
            for e in assignment.endpoints[0].lb_endpoints
        }
        assert health == {"127.0.0.1": health_check_pb2.UNHEALTHY, "127.0.0.2": health_check_pb2.HEALTHY}
        call.cancel()

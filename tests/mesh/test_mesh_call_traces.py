"""Traces of the mesh's other calls: an ext_authz Check and an RLS ShouldRateLimit are each a server
span under the caller's traceparent, with the filter phases that ran as children, on the mesh
port's own transport and on grpcio's server alike; an ext_proc request that matched no route is a
server span of its own, as on the proxy."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from gateway.mesh.xds_resources import CLUSTER
from tests.mesh.mesh_support import mesh_config, request_headers
from tests.mesh.test_mesh_ads import ads_request
from tests.mesh.test_mesh_authz_rls import OVER_LIMIT, check_request, limit_request
from tests.mesh.test_mesh_ext_proc import exchange
from tests.mesh.test_mesh_traces import traceparent, tree
from tests.tracing.otlp_receiver import SERVER, ReceivedSpan, otlp_receiver

CHECK = "envoy.service.auth.v3.Authorization/Check"
SHOULD_RATE_LIMIT = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"


@asynccontextmanager
async def channel_to(port: int, spliced: bool) -> AsyncIterator[grpc.aio.Channel]:
    """A channel whose connection the mesh port serves itself, or (`spliced`: its first call is
    ADS) hands to grpcio's server."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        if not spliced:
            yield channel
            return
        ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await ads.write(ads_request(CLUSTER))
        await asyncio.wait_for(ads.read(), 5)  # the connection is grpcio's now
        try:
            yield channel
        finally:
            ads.cancel()


def server_spans(spans: list[ReceivedSpan], *trace_ids: str) -> bool:
    return set(trace_ids) <= {s.trace_id for s in spans if s.kind == SERVER}


@pytest.mark.parametrize("spliced", [False, True], ids=["mesh-transport", "grpcio"])
async def test_check_and_rate_limit_calls_are_traced(
    make_gateway: Any, tmp_path: Path, spliced: bool
) -> None:
    async with otlp_receiver() as receiver:
        config = mesh_config(tmp_path)
        config["tracing"] = {"enabled": True, "sampling_ratio": 0.0, "endpoint": receiver.endpoint}
        async with make_gateway(config) as gateway, channel_to(gateway.mesh.port, spliced) as channel:
            allowed, refused, in_metadata, limits, over, unknown, unsampled = (
                secrets.token_hex(16) for _ in range(7)
            )
            parent = secrets.token_hex(8)
            check = authz_grpc.AuthorizationStub(channel).Check
            path = "/limited/v2/models/x/infer"
            # The request's own traceparent, as Envoy describes the request.
            await check(check_request(path, {"x-api-key": "k1", "traceparent": traceparent(allowed, parent)}))
            await check(check_request(path, {"traceparent": traceparent(refused, parent)}))
            # None in the request: the call's metadata carries Envoy's.
            await check(
                check_request(path, {"x-api-key": "k1"}),
                metadata=(("traceparent", traceparent(in_metadata, parent)),),
            )
            should = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit
            two = limit_request("limited", [("principal", "alice")], [("principal", "bob")])
            await should(two, metadata=(("traceparent", traceparent(limits, parent)),))
            answer = await should(two, metadata=(("traceparent", traceparent(over, parent)),))
            for _ in range(2):  # the route's limit is 3 a minute: alice is over it by now
                answer = await should(two, metadata=(("traceparent", traceparent(over, parent)),))
            assert answer.overall_code == OVER_LIMIT
            with pytest.raises(grpc.aio.AioRpcError):
                nope = limit_request("nope", [("principal", "a")])
                await should(nope, metadata=(("traceparent", traceparent(unknown, parent)),))
            # The caller's unsampled flag decides, with the ratio at 0 for new traces.
            await should(two, metadata=(("traceparent", traceparent(unsampled, parent, False)),))
            await check(check_request(path, {}))  # no trace context at all: a new trace, not sampled

            spans = await receiver.wait_for(
                lambda spans: server_spans(spans, allowed, refused, in_metadata, limits, over, unknown)
            )

        server, children = tree(spans, allowed)
        assert server.parent_id == parent
        assert server.name == CHECK
        assert server.attributes["rpc.system"] == "grpc"
        assert server.attributes["rpc.method"] == "Check"
        assert server.attributes["http.route"] == "limited"
        assert server.attributes["http.response.status_code"] == 200
        assert children == ["filter auth_apikey request"]  # authorization only: no limit spent
        server, children = tree(spans, refused)
        assert server.attributes["http.response.status_code"] == 401
        assert not server.error  # a refusal is the caller's fault, not the server's
        assert children == ["filter auth_apikey request"]
        server, _ = tree(spans, in_metadata)
        assert server.parent_id == parent
        assert server.attributes["http.response.status_code"] == 200

        server, children = tree(spans, limits)
        assert server.parent_id == parent
        assert server.name == SHOULD_RATE_LIMIT
        assert server.attributes["rpc.service"] == "envoy.service.ratelimit.v3.RateLimitService"
        assert server.attributes["http.response.status_code"] == 200
        assert children == ["filter rate_limit request"] * 2  # one per descriptor
        servers = [s for s in spans if s.trace_id == over and s.kind == SERVER]
        statuses = [s.attributes["http.response.status_code"] for s in servers]
        assert statuses.count(429) == 1 and statuses.count(200) == 2  # the third is over alice's limit
        server, children = tree(spans, unknown)
        assert server.attributes["http.response.status_code"] == 404
        assert children == []
        assert not [s for s in spans if s.trace_id == unsampled]
        assert {s.name for s in spans if s.kind == SERVER} == {CHECK, SHOULD_RATE_LIMIT}


async def test_an_unrouted_ext_proc_request_is_traced(make_gateway: Any, tmp_path: Path) -> None:
    async with otlp_receiver() as receiver:
        config = mesh_config(tmp_path)
        config["routes"] = [route for route in config["routes"] if route["name"] != "risk"]  # no catch-all
        config["tracing"] = {"enabled": True, "sampling_ratio": 1.0, "endpoint": receiver.endpoint}
        async with make_gateway(config) as gateway:
            unrouted, parent = secrets.token_hex(16), secrets.token_hex(8)
            (answer,) = await exchange(
                gateway.mesh.port,
                [request_headers("/nowhere", [("traceparent", traceparent(unrouted, parent))])],
            )
            assert answer.immediate_response.status.code == 404
            spans = await receiver.wait_for(lambda spans: server_spans(spans, unrouted))

        server, children = tree(spans, unrouted)
        assert server.parent_id == parent
        assert server.name == "POST"  # named by its method alone, as the proxy names one
        assert "http.route" not in server.attributes
        assert server.attributes["http.response.status_code"] == 404
        assert children == []

"""The mesh port's own HTTP/2 transport (gateway/mesh/front.py, http2.py): what a connection whose
first call is ext_proc gets, what it refuses, large messages both ways, and bad bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from tests.mesh.mesh_support import mesh_config, request_body, request_headers, response_headers
from tests.mesh.test_mesh_authz_rls import check_request
from tests.mesh.test_mesh_ext_proc import exchange

ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection; closing with our bytes unread resets
    it (TCP's RST), which loses what was not read yet. Times out if the server never closes."""
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""


async def test_a_process_connection_serves_the_other_apis_too(make_gateway: Any, tmp_path: Path) -> None:
    async with (
        make_gateway(mesh_config(tmp_path)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(request_headers("/x", [("x-user-id", "u1")]))
        first = await asyncio.wait_for(call.read(), 5)
        assert first.WhichOneof("response") == "request_headers"
        await call.done_writing()
        # The same connection (grpcio shares one between its channels to one address, so an
        # xDS client beside this one may use it): Check and ADS are served on it too.
        answer = await authz_grpc.AuthorizationStub(channel).Check(
            check_request("/limited/v2/models/x/infer", {}), timeout=5
        )
        assert answer.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
        for _ in range(2):
            ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
            await ads.write(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["risk"]))
            routes = await asyncio.wait_for(ads.read(), 5)
            assert routes.type_url == ROUTE and routes.resources
            ads.cancel()  # the servicer's stream is cancelled, and the next one served


async def test_messages_larger_than_the_flow_control_windows_both_ways(
    make_gateway: Any, tmp_path: Path
) -> None:
    config = mesh_config(tmp_path)
    cached = {"name": "cached", "match": {"prefix": "/cached/"}, "backend": {"cluster": "risk-v1"}}
    config["routes"].insert(0, {**cached, "filters": [{"cache": {"ttl": "60s"}}]})
    # Far above HTTP/2's 64 KiB initial windows: the transport must refill and wait for them.
    answer = b'{"outputs": "' + b"y" * 400_000 + b'"}'
    question = b'{"inputs": "' + b"x" * 300_000 + b'"}'
    async with make_gateway(config) as gateway:
        port = gateway.mesh.port
        path = "/cached/v2/models/m/infer"
        miss = await exchange(
            port,
            [
                request_headers(path, end_of_stream=False),
                request_body(question, end_of_stream=True),
                response_headers(200),
                pb.ProcessingRequest(response_body=pb.HttpBody(body=answer, end_of_stream=True)),
            ],
        )
        assert [m.WhichOneof("response") for m in miss] == [
            "request_headers",
            "request_body",
            "response_headers",
            "response_body",
        ]
        hit = await exchange(
            port, [request_headers(path, end_of_stream=False), request_body(question, end_of_stream=True)]
        )
        assert hit[1].immediate_response.status.code == 200
        assert hit[1].immediate_response.body == answer


async def test_bytes_that_are_not_http2_close_the_connection(make_gateway: Any, tmp_path: Path) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        # Not HTTP/2 at all: the connection is closed, with nothing answered but our SETTINGS.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            received = await until_closed(reader)
            assert b"HTTP/1.1" not in received
        finally:
            writer.close()
        # HTTP/2, but frames and never a call: closed once 64 KiB are held.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x00" * 8  # PING, 8 bytes
            for _ in range(5000):  # 85 KB of PINGs
                writer.write(ping)
            await writer.drain()
            received = await until_closed(reader)
            assert received[3:4] in (b"", b"\x04")  # our SETTINGS first, unless the reset beat it
        finally:
            writer.close()
        # The server keeps serving.
        (answer,) = await exchange(port, [request_headers("/x", [("x-user-id", "u2")])])
        assert answer.WhichOneof("response") == "request_headers"

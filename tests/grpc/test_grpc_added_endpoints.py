"""An endpoint that comes after the config serves gRPC at its own gRPC port: one added through the
admin API with a `grpc_port` (refused as the config refuses a bad one, kept across a reload), and
a worker a pool announces with a gRPC address (gRPC health checks go there too)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson

from inference_workers.grpc_codec import pb, pb_grpc
from tests.conftest import gateway_config
from tests.grpc.grpc_upstreams import Upstream
from tests.support.processes import free_port, wait_until

_OIP_ROUTE = {
    "name": "oip",
    "match": {"grpc_service": "inference.GRPCInferenceService"},
    "backend": {"cluster": "up"},
}


async def _answered_by(port: int, calls: int) -> list[str]:
    """Which upstream answered each of `calls` ModelInfer calls (it names itself as the version)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answers = [await stub.ModelInfer(pb.ModelInferRequest(model_name="risk")) for _ in range(calls)]
    return [answer.model_version for answer in answers]


async def _post(session: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url, json=payload) as response:
        return response.status, await response.json()


async def test_an_endpoint_added_with_a_grpc_port_serves_grpc_calls_there(make_gateway: Any) -> None:
    # Nothing listens at the added endpoint's HTTP port: only its gRPC port can answer.
    http_port = free_port()
    added = f"127.0.0.1:{http_port}"
    async with Upstream("config") as first, Upstream("added") as second:
        config = gateway_config([first.address], routes=[_OIP_ROUTE])
        async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
            admin = f"http://127.0.0.1:{gw.admin_port}/admin"
            url = f"{admin}/clusters/up/endpoints"
            for grpc_port, message in (
                (http_port, f"grpc_port {http_port} is the port of address {added}"),
                (0, "grpc_port must be a whole number from 1 to 65535"),
                (70000, "grpc_port must be a whole number from 1 to 65535"),
                ("9000", "grpc_port must be a whole number"),
                (True, "grpc_port must be a whole number"),
            ):
                status, body = await _post(session, url, {"address": added, "grpc_port": grpc_port})
                assert status == 400 and body["field"] == "grpc_port", body
                assert message in body["error"], body
            assert [e.address for e in gw.runtime.clusters["up"].endpoints.endpoints] == [first.address]

            status, body = await _post(session, url, {"address": added, "grpc_port": second.port})
            assert status == 201 and body["grpc_port"] == second.port, body
            async with session.post(
                f"{admin}/clusters/up/endpoints/{first.address}/drain", json={}
            ) as drained:
                assert drained.status == 200
            assert await _answered_by(gw.data_port, 4) == ["added"] * 4

            # a reload rebuilds the cluster: the added endpoint comes back with its gRPC port
            async with session.post(f"{admin}/reload", json={}) as reloaded:
                assert reloaded.status == 200, await reloaded.text()
            answered = await _answered_by(gw.data_port, 6)
            assert "added" in answered and set(answered) <= {"added", "config"}

            # removed: its gRPC address goes with it
            async with session.post(
                f"{admin}/clusters/up/endpoints/{first.address}/undrain", json={}
            ) as back:
                assert back.status == 200
            async with session.delete(f"{url}/{added}", json={}) as removed:
                assert removed.status == 200
            assert added not in gw.grpc.channels.grpc_addresses
            assert await _answered_by(gw.data_port, 2) == ["config"] * 2


class _Serving(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio is untyped
    """grpc.health.v1 Check answered SERVING."""

    def __init__(self) -> None:
        self.asked = 0

    async def _check(self, request: bytes, context: Any) -> bytes:
        self.asked += 1
        return b"\x08\x01"

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        if details.method == "/grpc.health.v1.Health/Check":
            return grpc.unary_unary_rpc_method_handler(self._check)
        return None


def _announce(path: Path, workers: list[tuple[str, str | None]]) -> None:
    entries = [{"address": address, "grpc": grpc_address, "ready": True} for address, grpc_address in workers]
    path.write_bytes(orjson.dumps({"endpoints": entries}))


async def test_a_pool_workers_announced_grpc_address_serves_calls_and_health_checks(
    make_gateway: Any, tmp_path: Path
) -> None:
    announce = tmp_path / "pool.json"
    http_port = free_port()  # nothing listens there: checks and calls must go to the gRPC address
    worker = f"127.0.0.1:{http_port}"
    upstream = Upstream("pooled")
    serving = _Serving()
    upstream.server.add_generic_rpc_handlers((serving,))
    _announce(announce, [(worker, upstream.address)])
    config = gateway_config(
        [],
        cluster={
            "discovery": {"type": "pool", "file": str(announce), "poll_interval": "100ms"},
            "health": {
                "type": "grpc",
                "interval": "100ms",
                "timeout": "2s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
            },
        },
        routes=[_OIP_ROUTE],
    )
    async with upstream, make_gateway(config) as gw:
        endpoints = gw.runtime.clusters["up"].endpoints
        assert [endpoint.address for endpoint in endpoints.endpoints] == [worker]
        await asyncio.to_thread(wait_until, lambda: serving.asked >= 3, 10)
        assert all(endpoint.active_healthy for endpoint in endpoints.endpoints)
        assert await _answered_by(gw.data_port, 3) == ["pooled"] * 3

        # the worker comes back on another gRPC port: the gateway follows the file
        moved = Upstream("moved")
        async with moved:
            _announce(announce, [(worker, moved.address)])
            await asyncio.to_thread(
                wait_until, lambda: gw.grpc.channels.grpc_addresses.get(worker) == moved.address, 10
            )
            assert await _answered_by(gw.data_port, 2) == ["moved"] * 2

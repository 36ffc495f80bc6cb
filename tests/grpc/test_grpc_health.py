"""grpc.health.v1 active health checks of a cluster's endpoints (`health: {type: grpc}`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from routing.health.grpc_check import CHECK_METHOD, check_request, serving_status
from tests.conftest import gateway_config
from tests.support.processes import free_port, wait_until

SERVING, NOT_SERVING = 1, 2


class _HealthUpstream(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio is untyped
    """Answers the health Check with a status the test sets, and /test.Echo/Unary with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = SERVING
        self.asked: list[bytes] = []
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def _check(self, request: bytes, context: Any) -> bytes:
        self.asked.append(request)
        return b"\x08" + bytes([self.status])

    async def _unary(self, request: bytes, context: Any) -> bytes:
        return self.name.encode()

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        if details.method == CHECK_METHOD:
            return grpc.unary_unary_rpc_method_handler(self._check)
        if details.method == "/test.Echo/Unary":
            return grpc.unary_unary_rpc_method_handler(self._unary)
        return None

    async def __aenter__(self) -> _HealthUpstream:
        self._server = grpc.aio.server(handlers=[self])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(0)


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[_HealthUpstream, _HealthUpstream]]:
    async with _HealthUpstream("one") as one, _HealthUpstream("two") as two:
        yield one, two


def test_the_health_messages_are_encoded_as_protobuf_does() -> None:
    assert check_request("") == b""
    assert check_request("inference") == b"\x0a\x09inference"
    assert serving_status(b"") == 0
    assert serving_status(b"\x08\x01") == SERVING
    assert serving_status(b"\x08\x02") == NOT_SERVING
    with pytest.raises(ValueError):
        serving_status(b"\x12\x00")
    with pytest.raises(ValueError):
        serving_status(b"\x08\x80")


async def test_an_endpoint_not_serving_is_taken_out_and_put_back(
    make_gateway: Any, upstreams: tuple[_HealthUpstream, _HealthUpstream]
) -> None:
    one, two = upstreams
    # Endpoint one is named by an HTTP address nothing listens on, with its gRPC port beside it: the
    # checks and the calls both go to the gRPC port.
    http_one = f"127.0.0.1:{free_port()}"
    config = gateway_config(
        [],
        cluster={
            "endpoints": [{"address": http_one, "grpc_port": one.port}, f"127.0.0.1:{two.port}"],
            "health": {
                "type": "grpc",
                "service": "inference",
                "interval": "100ms",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
            },
        },
        routes=[{"name": "echo", "match": {"grpc_service": "test.Echo"}, "backend": {"cluster": "up"}}],
    )
    async with make_gateway(config) as gw:
        endpoints = gw.runtime.clusters["up"].endpoints

        def healthy(address: str) -> bool:
            endpoint = endpoints.get(address)
            return endpoint is not None and endpoint.active_healthy

        await asyncio.to_thread(wait_until, lambda: len(one.asked) >= 2 and len(two.asked) >= 2, 10)
        assert one.asked[0] == b"\x0a\x09inference"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel:
            unary = channel.unary_unary("/test.Echo/Unary")
            assert {await unary(b"") for _ in range(10)} == {b"one", b"two"}
            one.status = NOT_SERVING
            await asyncio.to_thread(wait_until, lambda: not healthy(http_one), 10)
            assert {await unary(b"") for _ in range(10)} == {b"two"}
            one.status = SERVING
            await asyncio.to_thread(wait_until, lambda: healthy(http_one), 10)
            assert {await unary(b"") for _ in range(10)} == {b"one", b"two"}

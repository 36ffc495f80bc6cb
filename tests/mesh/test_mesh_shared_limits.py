"""One limit for Envoy fleets and turnout proxies: RLS and the proxy share the rate limit's Redis state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from tests.mesh.mesh_support import mesh_config, request_headers, response_headers
from tests.mesh.test_mesh_authz_rls import OK, limit_request
from tests.mesh.test_mesh_ext_proc import exchange
from tests.support.redis_server import private_redis_server

# redis-server starts in milliseconds; a loaded 2-core machine can take longer.
REDIS_START_TIMEOUT_S = 15.0


@pytest.fixture
def redis_url() -> Iterator[str]:
    with private_redis_server() as url:
        yield url


async def test_rls_and_the_proxy_count_against_one_limit(
    make_gateway: Any, tmp_path: Path, redis_url: str
) -> None:
    mesh, proxy = mesh_config(tmp_path), mesh_config(tmp_path)
    del proxy["mesh"]
    for config in (mesh, proxy):
        config["state"] = {"backend": "redis", "url": redis_url}
        limited = config["routes"][0]
        assert limited["name"] == "limited"
        limited["filters"][1]["rate_limit"]["backend"] = "redis"
    async with make_gateway(mesh) as beside_envoy, make_gateway(proxy) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{beside_envoy.mesh.port}") as channel:
            should = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit
            codes = [
                (
                    await should(limit_request("turnout", [("route", "limited"), ("principal", "alice")]))
                ).overall_code
                for _ in range(3)
            ]
        assert codes == [OK, OK, OK]  # alice's burst of 3 is spent through Envoy's RLS
        url = f"http://127.0.0.1:{gateway.data_port}/limited/v2/models/x/infer"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, headers={"x-api-key": "k1"}) as answer,
        ):
            assert answer.status == 429, (
                await answer.text()
            )  # and the proxy's own limiter, on another gateway, agrees


async def test_ext_proc_waits_on_a_redis_limit_in_order(
    make_gateway: Any, tmp_path: Path, redis_url: str
) -> None:
    """A decision that waits (the limit is in Redis) is carried on by a task; the answers keep
    their order and the limit counts every request."""
    config = mesh_config(tmp_path)
    config["state"] = {"backend": "redis", "url": redis_url}
    config["routes"][0]["filters"][1]["rate_limit"]["backend"] = "redis"
    async with make_gateway(config) as gateway:
        port = gateway.mesh.port
        path = "/limited/v2/models/x/infer"
        answers = [
            (await exchange(port, [request_headers(path, [("x-api-key", "k1")]), response_headers(200)]))
            for _ in range(4)
        ]
        assert [[a.WhichOneof("response") for a in pair] for pair in answers[:3]] == [
            ["request_headers", "response_headers"]
        ] * 3
        assert answers[3][0].immediate_response.status.code == 429  # burst 3, counted in Redis

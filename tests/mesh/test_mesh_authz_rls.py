"""ext_authz and RLS: Envoy's CheckRequest and RateLimitRequest, answered by the routes' filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import address_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as descriptor_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as attributes_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.mesh.mesh_support import mesh_config, request_headers

OK = rls_pb2.RateLimitResponse.OK
OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT


def check_request(path: str, headers: dict[str, str]) -> Any:
    http = attributes_pb2.AttributeContext.HttpRequest(
        method="POST", path=path, host="mesh.test", headers={":path": path, **headers}
    )
    source = attributes_pb2.AttributeContext.Peer(
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="10.0.0.7", port_value=5)
        )
    )
    return authz_pb2.CheckRequest(
        attributes=attributes_pb2.AttributeContext(
            source=source, request=attributes_pb2.AttributeContext.Request(http=http)
        )
    )


def limit_request(domain: str, *descriptors: list[tuple[str, str]]) -> Any:
    return rls_pb2.RateLimitRequest(
        domain=domain,
        descriptors=[
            descriptor_pb2.RateLimitDescriptor(
                entries=[descriptor_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries]
            )
            for entries in descriptors
        ],
    )


async def test_check_runs_the_route_auth_filters(make_gateway: Any, tmp_path: Path) -> None:
    async with (
        make_gateway(mesh_config(tmp_path)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        check = authz_grpc.AuthorizationStub(channel).Check
        denied = await check(check_request("/limited/v2/models/x/infer", {}))
        assert denied.status.code == 16  # UNAUTHENTICATED
        assert denied.denied_response.status.code == 401
        assert '"code":"unauthorized"' in denied.denied_response.body.replace(" ", "")
        wrong = await check(check_request("/limited/v2/models/x/infer", {"x-api-key": "nope"}))
        assert wrong.denied_response.status.code == 401
        allowed = await check(check_request("/limited/v2/models/x/infer", {"x-api-key": "k1"}))
        assert allowed.status.code == 0
        assert allowed.HasField("ok_response")
        # Authorization alone: ext_authz never spends the rate limit (RLS does).
        for _ in range(5):
            again = await check(check_request("/limited/v2/models/x/infer", {"x-api-key": "k1"}))
            assert again.status.code == 0
        unrouted = await check(check_request("/%zz", {}))
        assert unrouted.denied_response.status.code == 400


async def test_rls_shares_the_proxy_route_limiter(make_gateway: Any, tmp_path: Path) -> None:
    async with (
        make_gateway(mesh_config(tmp_path)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        should = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit
        codes = []
        for _ in range(2):
            answer = await should(limit_request("limited", [("principal", "alice")], [("principal", "bob")]))
            codes.append([s.code for s in answer.statuses])
        assert codes == [[OK, OK], [OK, OK]]
        # alice's third unit goes through ext_proc: the same limiter object (burst 3) counts it.
        call = ext_proc_grpc.ExternalProcessorStub(channel).Process()
        await call.write(request_headers("/limited/v2/models/x/infer", [("x-api-key", "k1")]))
        assert (await call.read()).WhichOneof("response") == "request_headers"
        await call.done_writing()
        answer = await should(limit_request("limited", [("principal", "alice")], [("principal", "bob")]))
        assert answer.overall_code == OVER_LIMIT
        assert [s.code for s in answer.statuses] == [OVER_LIMIT, OK]


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (limit_request("nope", [("principal", "a")]), grpc.StatusCode.NOT_FOUND, "unknown route 'nope'"),
        (
            limit_request("limited", [("colour", "red")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown descriptor key",
        ),
    ],
    ids=["domain", "descriptor"],
)
async def test_rls_refuses_what_it_cannot_map(
    make_gateway: Any, tmp_path: Path, request_: Any, code: grpc.StatusCode, text: str
) -> None:
    async with (
        make_gateway(mesh_config(tmp_path)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.mesh.port}") as channel,
    ):
        should = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await should(request_)
        assert caught.value.code() == code
        assert text in (caught.value.details() or "")
        fine = await should(limit_request("limited", [("generic_key", "x"), ("principal", "carol")]))
        assert fine.overall_code == OK

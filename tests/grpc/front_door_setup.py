"""The setup the front door's end-to-end tests share: the gateway config that routes to two real
upstreams (`Upstream`; the `upstreams` fixture is in conftest.py), an OIP request, a gateway with a
client channel on its gRPC port or main port, and the checks every transport must pass: a routed
call, and clean errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from inference_workers.grpc_codec import pb, pb_grpc
from tests.conftest import gateway_config
from tests.grpc.grpc_upstreams import Upstream
from tests.support.processes import free_port, wait_until_async

# printf %s k1 | sha256sum
KEY_K1_SHA256 = "6ab9f1eb8f7d3388f4f9d586f66e99fd54080df2c446f0e58668b09c08a16dd0"
OIP = "/inference.GRPCInferenceService"
# The main port's HTTP/2 on the gateway's own transport.
NATIVE = {"grpc_transport": "native"}
# An empty SETTINGS frame (RFC 9113 6.5): length 0, type 4, no flags, stream 0.
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def front_door_config(one: Upstream, two: Upstream, tmp_path: Path, **listen: Any) -> dict[str, Any]:
    """Routes by model, by service and to an A/B experiment over `one` (cluster up) and `two`; a
    route guarded by an API key and a rate limit; a gRPC port of its own, 64 KiB messages at most."""
    keys = {"keys": [{"sha256": KEY_K1_SHA256, "principal": "alice"}]}
    config = gateway_config(
        [one.address],
        listen={"grpc_port": free_port(), "max_body_bytes": 64 * 1024, **listen},
        routes=[
            {"name": "fraud", "match": {"model": "fraud"}, "backend": {"cluster": "two"}},
            {
                "name": "guarded",
                "match": {"model": "guarded"},
                "backend": {"cluster": "up"},
                "filters": [
                    {"auth_apikey": keys},
                    {"rate_limit": {"limits": [{"key": "principal", "rate": "2/min", "burst": 2}]}},
                ],
            },
            {"name": "ab", "match": {"model": "ab"}, "backend": {"experiment": "exp"}},
            {
                "name": "echo",
                "match": {"grpc_service": "test.Echo"},
                "backend": {"cluster": "two"},
                "timeout": "2s",
            },
            {
                "name": "oip",
                "match": {"grpc_service": "inference.GRPCInferenceService"},
                "backend": {"cluster": "up"},
            },
        ],
    )
    config["clusters"]["two"] = {"endpoints": [two.address]}
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": ["header:x-user-id"],
            "arms": {
                "control": {"cluster": "up", "weight": 50},
                "treatment": {"cluster": "two", "weight": 50},
            },
        }
    }
    return config


def infer(model: str, *, version: str = "", id: str = "r1") -> Any:
    return pb.ModelInferRequest(
        model_name=model, model_version=version, id=id, raw_input_contents=[b"\x00\x01\x02\x03" * 4]
    )


@asynccontextmanager
async def serving(
    make_gateway: Any, config: dict[str, Any], *, main_port: bool = False
) -> AsyncIterator[tuple[Any, grpc.aio.Channel]]:
    """A gateway of `config`, and a channel to its gRPC port (or its main port)."""
    async with make_gateway(config) as gw:
        assert gw.grpc is not None
        port = gw.data_port if main_port else gw.grpc.port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield gw, channel


async def check_deadlines_and_bad_input(channel: grpc.aio.Channel) -> None:
    """Deadlines, unknown methods, garbled and oversized messages get clean errors."""
    sleep = channel.unary_unary("/test.Echo/Sleep")
    # the client's deadline goes upstream with the call
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await sleep(b"1.0", timeout=0.2)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the route's timeout (2 s) caps a longer deadline
    with pytest.raises(grpc.aio.AioRpcError) as capped:
        await sleep(b"3.0", timeout=10)
    assert capped.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # no route: an unknown service
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await channel.unary_unary("/nobody.Knows/This")(b"")
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # a ModelInfer message that is not protobuf
    with pytest.raises(grpc.aio.AioRpcError) as garbled:
        await channel.unary_unary(f"{OIP}/ModelInfer")(b"\x0a\xff\xff")
    assert garbled.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a message over listen.max_body_bytes (64 KiB here)
    with pytest.raises(grpc.aio.AioRpcError) as oversize:
        await channel.unary_unary("/test.Echo/Unary")(b"x" * (100 * 1024))
    assert oversize.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def check_a_routed_call(channel: grpc.aio.Channel, one: Upstream) -> None:
    """Model "risk" falls to the service route (cluster up = `one`), its metadata carried both ways
    and its answer the same as `one`'s direct; model "fraud" goes to cluster two."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    metadata = (("x-tenant", "acme"), ("x-trace-bin", b"\x00\xff"))
    call = stub.ModelInfer(infer("risk"), metadata=metadata)
    answer = await call
    seen = one.oip.seen_metadata[-1]
    assert seen["x-tenant"] == "acme" and seen["x-trace-bin"] == b"\x00\xff"
    async with grpc.aio.insecure_channel(one.address) as direct_channel:
        assert answer == await pb_grpc.GRPCInferenceServiceStub(direct_channel).ModelInfer(infer("risk"))
    assert ("x-upstream", "one") in tuple(await call.initial_metadata())
    assert ("x-upstream-trailer", "one") in tuple(await call.trailing_metadata())
    assert (await stub.ModelInfer(infer("fraud"))).model_version == "two"


async def check_a_cancelled_stream_frees_its_endpoint(
    gw: Any, channel: grpc.aio.Channel, address: str
) -> None:
    """A bidi stream cancelled mid-way cancels its upstream call on cluster `two`: the endpoint's call
    ends once (in flight back to zero, never below), and the gateway keeps serving."""
    bidi = channel.stream_stream("/test.Echo/Bidi")()
    await bidi.write(b"a")
    assert await bidi.read() == b"A"
    bidi.cancel()
    endpoint = gw.runtime.clusters["two"].endpoints.get(address)
    assert endpoint is not None
    await wait_until_async(lambda: endpoint.inflight <= 0, message="the cancelled call to end")
    assert endpoint.inflight == 0
    assert await channel.unary_unary("/test.Echo/Unary")(b"ok") == b"echo:ok"

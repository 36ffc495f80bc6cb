"""The gRPC front door end to end: a grpcio client -> turnout's gRPC port -> real gRPC upstreams."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from inference_workers.grpc_codec import pb, pb_grpc
from tests.grpc.front_door_setup import (
    OIP,
    check_a_cancelled_stream_frees_its_endpoint,
    check_a_routed_call,
    check_deadlines_and_bad_input,
    front_door_config,
    infer,
    serving,
)
from tests.grpc.grpc_upstreams import Upstream
from tests.support.processes import free_port, wait_until_async


@pytest.fixture
def config(upstreams: tuple[Upstream, Upstream], tmp_path: Path) -> dict[str, Any]:
    return front_door_config(*upstreams, tmp_path)


async def test_unary_calls_route_by_model_and_carry_metadata(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], config: dict[str, Any]
) -> None:
    one, _ = upstreams
    async with serving(make_gateway, config) as (_, channel):
        await check_a_routed_call(channel, one)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="risk"))).ready
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        # an upstream's own error status reaches the client as it was sent
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.ModelInfer(infer("risk", id="bad"))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "wrong shape" in (failed.value.details() or "")


async def test_filters_answer_with_grpc_codes(make_gateway: Any, config: dict[str, Any]) -> None:
    async with serving(make_gateway, config) as (gw, channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as no_key:
            await stub.ModelInfer(infer("guarded"))
        assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as bad_key:
            await stub.ModelInfer(infer("guarded"), metadata=(("x-api-key", "k2"),))
        assert bad_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for _ in range(2):
            await stub.ModelInfer(infer("guarded"), metadata=(("authorization", "Bearer k1"),))
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await stub.ModelInfer(infer("guarded"), metadata=(("x-api-key", "k1"),))
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(limited.value.trailing_metadata() or ())
        assert int(trailers["retry-after"]) >= 1
        calls = {
            (sample.labels["method"], sample.labels["code"]): sample.value
            for metric in gw.registry.collect()
            if metric.name == "turnout_grpc_calls"
            for sample in metric.samples
            if sample.name == "turnout_grpc_calls_total"
        }
        assert calls == {
            ("ModelInfer", "UNAUTHENTICATED"): 2,
            ("ModelInfer", "OK"): 2,
            ("ModelInfer", "RESOURCE_EXHAUSTED"): 1,
        }


async def test_a_sticky_experiment_names_its_arm_in_initial_metadata(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    async with serving(make_gateway, config) as (_, channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        arms: dict[str, set[str]] = {}
        for user in range(40):
            for _ in range(2):
                call = stub.ModelInfer(infer("ab"), metadata=(("x-user-id", f"u{user}"),))
                answer = await call
                initial = dict(await call.initial_metadata())
                assert initial["x-turnout-experiment"] == "exp"
                arm = initial["x-turnout-arm"]
                assert answer.model_version == ("one" if arm == "control" else "two")
                arms.setdefault(f"u{user}", set()).add(arm)
        assert all(len(seen) == 1 for seen in arms.values())
        assert {next(iter(seen)) for seen in arms.values()} == {"control", "treatment"}


async def test_every_call_shape_of_any_service_is_relayed(make_gateway: Any, config: dict[str, Any]) -> None:
    async with serving(make_gateway, config) as (_, channel):
        assert await channel.unary_unary("/test.Echo/Unary")(b"hi") == b"echo:hi"
        streamed = [m async for m in channel.unary_stream("/test.Echo/ServerStream")(b"5")]
        assert streamed == [b"0", b"1", b"2", b"3", b"4"]

        async def three() -> AsyncIterator[bytes]:
            for word in (b"a", b"b", b"c"):
                yield word

        assert await channel.stream_unary("/test.Echo/ClientStream")(three()) == b"a+b+c"
        bidi = channel.stream_stream("/test.Echo/Bidi")()
        for word in (b"x", b"yz"):
            await bidi.write(word)
            assert await bidi.read() == word.upper()  # one answer per message, as they come
        await bidi.done_writing()
        assert await bidi.read() == grpc.aio.EOF


async def test_deadlines_and_bad_input_get_clean_errors(make_gateway: Any, config: dict[str, Any]) -> None:
    async with serving(make_gateway, config) as (_, channel):
        await check_deadlines_and_bad_input(channel)
        # and the gateway keeps serving
        assert await channel.unary_unary("/test.Echo/Unary")(b"ok") == b"echo:ok"


async def test_a_cancelled_stream_cancels_the_upstream_call(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], config: dict[str, Any]
) -> None:
    _, two = upstreams
    async with serving(make_gateway, config) as (gw, channel):
        await check_a_cancelled_stream_frees_its_endpoint(gw, channel, two.address)


async def test_an_upstream_killed_under_load_is_retried_around_and_ejected(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], config: dict[str, Any]
) -> None:
    one, _ = upstreams
    async with Upstream("three") as three:
        config["clusters"]["up"]["endpoints"] = [one.address, three.address]
        async with make_gateway(config) as gw:
            assert gw.grpc is not None
            endpoints = gw.runtime.clusters["up"].endpoints
            killed, half_way = asyncio.Event(), asyncio.Event()
            failures: list[tuple[bool, grpc.StatusCode]] = []
            answered: Counter[str] = Counter()

            async def client(channel: grpc.aio.Channel) -> None:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                for _ in range(60):
                    ejected = killed.is_set() and three.address not in {e.address for e in endpoints.eligible}
                    try:
                        answer = await stub.ModelInfer(infer("risk"))
                        answered[answer.model_version] += 1
                        if answered.total() >= 100:
                            half_way.set()
                    except grpc.aio.AioRpcError as error:
                        failures.append((ejected, error.code()))

            async def kill() -> None:
                await half_way.wait()
                await three.server.stop(None)
                killed.set()

            async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel:
                await asyncio.gather(kill(), *(client(channel) for _ in range(8)))
            assert answered["three"] > 0 and answered["one"] > 0
            assert three.address not in {e.address for e in endpoints.eligible}  # ejected
            assert not [code for ejected, code in failures if ejected]  # nothing failed once it was
            # calls in flight on the killed server may fail with it; none was sent to it once it was down
            assert len(failures) <= 8, failures


async def test_calls_in_flight_finish_through_a_reload_and_a_drain(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], config: dict[str, Any]
) -> None:
    _, two = upstreams  # serves test.Echo
    async with serving(make_gateway, config) as (gw, channel):
        sleep = channel.unary_unary("/test.Echo/Sleep")
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        slow = [asyncio.ensure_future(sleep(b"0.5")) for _ in range(10)]
        fast = [asyncio.ensure_future(stub.ModelInfer(infer("fraud"))) for _ in range(50)]
        await wait_until_async(lambda: two.echo.slept == 10, message="10 slow calls upstream")
        assert await gw.reload("test") == []
        assert all(answer.model_version == "two" for answer in await asyncio.gather(*fast))
        more = [asyncio.ensure_future(sleep(b"0.5")) for _ in range(10)]
        await wait_until_async(lambda: two.echo.slept == 20, message="10 more slow calls upstream")
        await gw.shutdown(drain_timeout=5.0)  # what SIGTERM runs
        assert await asyncio.gather(*slow, *more) == [b"slept"] * 20
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary("/test.Echo/Unary")(b"late", timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", bytes(range(256)) * 4],
)
async def test_a_garbled_preface_closes_that_connection_only(
    make_gateway: Any, config: dict[str, Any], garbage: bytes
) -> None:
    async with make_gateway(config) as gw:
        assert gw.grpc is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.grpc.port)
        writer.write(garbage)
        await writer.drain()
        # the server may answer with a GOAWAY frame, then it closes the connection
        async with asyncio.timeout(5):
            while await reader.read(65536):
                pass
        writer.close()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel:
            assert await channel.unary_unary("/test.Echo/Unary")(b"ok") == b"echo:ok"


async def test_model_stream_infer_is_routed_by_its_first_message(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    async with serving(make_gateway, config) as (_, channel):
        for model, upstream in (("fraud", b"two"), ("risk", b"one")):
            stream = channel.stream_stream(f"{OIP}/ModelStreamInfer")()
            messages = [infer(model, id=f"s{i}").SerializeToString() for i in range(3)]
            for message in messages:
                await stream.write(message)
                assert await stream.read() == upstream + b":" + message
            await stream.done_writing()
            assert await stream.read() == grpc.aio.EOF


async def test_an_unreachable_cluster_is_unavailable_without_naming_its_addresses(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nobody listens there
    config["clusters"]["two"]["endpoints"] = [dead]
    async with serving(make_gateway, config) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        assert down.value.details() == "no upstream of cluster 'two' could take the call"


async def test_grpc_calls_get_access_log_lines(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], config: dict[str, Any], tmp_path: Path
) -> None:
    _, two = upstreams
    log_path = tmp_path / "access.log"
    config["access_log"] = {"enabled": True, "path": str(log_path)}
    async with serving(make_gateway, config) as (_, channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(infer("fraud"))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ModelInfer(infer("guarded"))
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(line["method"], line["path"], line["route"], line["status"]) for line in lines] == [
        ("POST", f"{OIP}/ModelInfer", "fraud", 200),
        ("POST", f"{OIP}/ModelInfer", "guarded", 401),
    ]
    assert lines[0]["endpoint"] == two.address and lines[0]["cluster"] == "two"


async def test_a_dead_endpoint_behind_the_stream_relay_is_ejected(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], config: dict[str, Any]
) -> None:
    _, two = upstreams
    dead = f"127.0.0.1:{free_port()}"  # nobody listens there
    config["clusters"]["two"]["endpoints"] = [two.address, dead]
    async with make_gateway(config) as gw:
        assert gw.grpc is not None
        endpoints = gw.runtime.clusters["two"].endpoints
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel:
            unary = channel.unary_unary("/test.Echo/Unary")  # a method the stream relay carries
            codes: Counter[str] = Counter()
            for _ in range(40):
                try:
                    await unary(b"x", timeout=5)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] += 1
        # the stream relay does not retry: the calls sent to the dead endpoint fail until the
        # outlier detector ejects it (5 consecutive failures), then none does
        assert dead not in {e.address for e in endpoints.eligible}
        assert codes["UNAVAILABLE"] == 5 and codes["OK"] == 35

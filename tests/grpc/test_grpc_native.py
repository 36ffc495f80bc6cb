"""The main port's HTTP/2 connections served on the gateway's own transport
(`listen.grpc_transport: native`, gateway/grpc/h2_front.py): the same answers, errors, limits and
drain as through grpcio."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from gateway.http.listener import H2_PREFACE
from inference_workers.grpc_codec import pb, pb_grpc
from tests.grpc.front_door_setup import (
    EMPTY_SETTINGS,
    check_a_cancelled_stream_frees_its_endpoint,
    check_a_routed_call,
    check_deadlines_and_bad_input,
    infer,
    serving,
)
from tests.grpc.grpc_upstreams import Upstream


async def test_unary_and_streaming_calls_through_the_own_transport(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], native_config: dict[str, Any]
) -> None:
    one, _ = upstreams
    async with serving(make_gateway, native_config, main_port=True) as (gw, channel):
        assert gw.grpc is not None and gw.grpc.native is not None
        await check_a_routed_call(channel, one)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        ab = stub.ModelInfer(infer("ab"), metadata=(("x-user-id", "u1"),))
        arm = dict(await ab.initial_metadata())["x-turnout-arm"]
        assert (await ab).model_version == ("one" if arm == "control" else "two")
        # every call shape of any service, on the same connection
        assert await channel.unary_unary("/test.Echo/Unary")(b"hi") == b"echo:hi"
        streamed = [m async for m in channel.unary_stream("/test.Echo/ServerStream")(b"3")]
        assert streamed == [b"0", b"1", b"2"]

        async def words() -> AsyncIterator[bytes]:
            for word in (b"a", b"b", b"c"):
                yield word

        assert await channel.stream_unary("/test.Echo/ClientStream")(words()) == b"a+b+c"
        bidi = channel.stream_stream("/test.Echo/Bidi")()
        big = bytes(range(256)) * 200  # 50 KiB each: windows refilled as the relay takes them
        for word in (b"x", big, big, b"yz"):
            await bidi.write(word)
            assert await bidi.read() == word.upper()
        await bidi.done_writing()
        assert await bidi.read() == grpc.aio.EOF
        # a compressed request is inflated
        gzip = channel.unary_unary("/test.Echo/Unary")
        assert await gzip(b"zipped", compression=grpc.Compression.Gzip) == b"echo:zipped"
        assert gw.grpc.splices.pairs == 0 and gw.grpc._private is None  # no grpcio server involved


async def test_errors_limits_and_deadlines_on_the_own_transport(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], native_config: dict[str, Any]
) -> None:
    _, two = upstreams
    async with serving(make_gateway, native_config, main_port=True) as (gw, channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
            await stub.ModelInfer(infer("guarded"))
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
        keyed = (("x-api-key", "k1"),)
        for _ in range(2):
            await stub.ModelInfer(infer("guarded"), metadata=keyed)
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await stub.ModelInfer(infer("guarded"), metadata=keyed)
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "retry-after" in dict(limited.value.trailing_metadata() or ())
        with pytest.raises(grpc.aio.AioRpcError) as upstream_error:
            await stub.ModelInfer(infer("risk", id="bad"))
        assert upstream_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert upstream_error.value.details() == "input 'x' has the wrong shape"
        await check_deadlines_and_bad_input(channel)
        # a stream cancelled mid-way cancels its upstream call, and the endpoint is freed
        await check_a_cancelled_stream_frees_its_endpoint(gw, channel, two.address)

        def broken_frame() -> bytes:
            with socket.create_connection(("127.0.0.1", gw.data_port), timeout=10) as conn:
                # a CONTINUATION with no HEADERS before it: a connection error (GOAWAY, type 7)
                conn.sendall(
                    H2_PREFACE
                    + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                    + b"\x00\x00\x01\x09\x04\x00\x00\x00\x01x"
                )
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                return data

        answer = await asyncio.to_thread(broken_frame)
        assert b"\x07\x00\x00\x00\x00\x00" in answer  # a GOAWAY frame on stream 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel:
            assert await channel.unary_unary("/test.Echo/Unary")(b"still") == b"echo:still"


async def test_an_idle_client_is_pinged_and_one_that_never_answers_is_closed() -> None:
    from prometheus_client import CollectorRegistry

    from gateway.grpc.channels import UpstreamChannels
    from gateway.grpc.h2_front import NativeFront
    from gateway.grpc.metrics import GrpcMetrics
    from gateway.grpc.relay import Relay

    def no_runtime() -> Any:
        raise AssertionError("no call is made on these connections")

    relay = Relay(no_runtime, UpstreamChannels(1024), GrpcMetrics(CollectorRegistry()))
    front = NativeFront(relay, 1024, keepalive=(0.2, 0.3))

    class Handover(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            front.take(transport, b"", "127.0.0.1", None)  # type: ignore[arg-type]

    server = await asyncio.get_running_loop().create_server(Handover, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def client(answer_pings: bool) -> tuple[int, bool]:
        """(pings seen, closed by the gateway) within 1.5 s."""
        pings = 0
        until = time.monotonic() + 1.5
        with socket.create_connection(("127.0.0.1", port), timeout=1.5) as conn:
            conn.sendall(H2_PREFACE + EMPTY_SETTINGS)
            buffer = b""
            try:
                while time.monotonic() < until and (chunk := conn.recv(65536)):
                    buffer += chunk
                    while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                        size = 9 + int.from_bytes(buffer[:3], "big")
                        kind, flags, payload = buffer[3], buffer[4], buffer[9:size]
                        buffer = buffer[size:]
                        if kind == 6 and not flags & 1:  # a PING to answer
                            pings += 1
                            if answer_pings:
                                conn.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
                return pings, time.monotonic() < until
            except TimeoutError:
                return pings, False

    try:
        silent, answering = await asyncio.gather(
            asyncio.to_thread(client, False), asyncio.to_thread(client, True)
        )
        assert silent == (1, True)  # one ping, unanswered: closed
        assert answering[0] >= 2 and not answering[1]  # pinged again and again, kept open
    finally:
        await front.stop(0)
        server.close()


async def test_rest_over_http2_is_refused_and_the_connection_serves_on(
    make_gateway: Any, native_config: dict[str, Any]
) -> None:
    from hpack import Decoder, Encoder

    async with make_gateway(native_config) as gw:

        def rest_request() -> tuple[dict[str, str], bytes]:
            block = Encoder().encode(
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/v2/models/risk/infer"),
                    (":authority", "x"),
                    ("content-type", "application/json"),
                ]
            )
            headers = len(block).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + block  # END_STREAM
            head: dict[str, str] = {}
            body = b""
            with socket.create_connection(("127.0.0.1", gw.data_port), timeout=10) as conn:
                conn.sendall(H2_PREFACE + EMPTY_SETTINGS + headers)
                buffer = b""
                while chunk := conn.recv(65536):
                    buffer += chunk
                    while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                        size, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
                        stream_id = int.from_bytes(buffer[5:9], "big")
                        payload, buffer = buffer[9 : 9 + size], buffer[9 + size :]
                        if stream_id != 1:
                            continue
                        if kind == 1:
                            head.update((str(name), str(value)) for name, value in Decoder().decode(payload))
                        elif kind == 0:
                            body += payload
                        if flags & 0x1:  # END_STREAM: the answer is whole
                            return head, body
            return head, body

        head, body = await asyncio.to_thread(rest_request)
        # A REST client must not read success: HTTP 505 with a body that says what to do.
        assert head[":status"] == "505" and "grpc-status" not in head
        assert head["content-type"].startswith("text/plain") and int(head["content-length"]) == len(body)
        assert b"send REST requests over HTTP/1.1" in body
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel:
            assert await channel.unary_unary("/test.Echo/Unary")(b"ok") == b"echo:ok"

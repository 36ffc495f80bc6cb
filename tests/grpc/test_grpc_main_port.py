"""gRPC on the gateway's main port: HTTP/2 connections told apart from HTTP/1.1 by their preface
(or ALPN h2 over TLS) and served on the gateway's own HTTP/2 transport (gateway/grpc/h2_front.py,
the default) or spliced to the gRPC front door's grpcio server (gateway/grpc/splice.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from gateway.http.listener import H2_PREFACE
from inference_workers.grpc_codec import pb, pb_grpc
from tests.conftest import gateway_config
from tests.gateway.test_tls import _pki
from tests.grpc.front_door_setup import EMPTY_SETTINGS, front_door_config, infer
from tests.grpc.grpc_upstreams import Upstream
from tests.grpc.test_grpc_tls import _credentials
from tests.support.processes import start_gateway, wait_until, wait_until_async


def _http_get(host: str, port: int, path: str) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as conn:
        conn.settimeout(10)
        conn.connect((host, port))
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return _read_all(conn)


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("transport", ["native", "splice"])
async def test_grpc_and_http_share_the_main_port(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], tmp_path: Path, transport: str
) -> None:
    one, two = upstreams
    config = front_door_config(one, two, tmp_path, host="::1", grpc_transport=transport)
    del config["listen"]["grpc_port"]
    log_path = tmp_path / "access.log"
    config["access_log"] = {"enabled": True, "path": str(log_path)}
    async with make_gateway(config) as gw:
        assert gw.grpc is not None and gw.grpc._private is None  # no private port before gRPC comes
        async with grpc.aio.insecure_channel(f"ipv6:[::1]:{gw.data_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert (await stub.ModelInfer(infer("fraud"))).model_version == "two"
            # spliced: grpcio's private listener opened at the first call; native: none at all
            assert (gw.grpc._private is not None) == (transport == "splice")
            assert (await stub.ServerLive(pb.ServerLiveRequest())).live
            call = stub.ModelInfer(infer("ab"), metadata=(("x-user-id", "u1"),))
            answer = await call
            arm = dict(await call.initial_metadata())["x-turnout-arm"]
            assert answer.model_version == ("one" if arm == "control" else "two")
            # every call shape, through one spliced connection
            assert await channel.unary_unary("/test.Echo/Unary")(b"hi") == b"echo:hi"
            streamed = [m async for m in channel.unary_stream("/test.Echo/ServerStream")(b"3")]
            assert streamed == [b"0", b"1", b"2"]
            bidi = channel.stream_stream("/test.Echo/Bidi")()
            for word in (b"x", b"yz"):
                await bidi.write(word)
                assert await bidi.read() == word.upper()
            await bidi.done_writing()
            assert await bidi.read() == grpc.aio.EOF
            # HTTP/1.1 on the same port, while the HTTP/2 connection is open (no route takes it)
            answer_http = await asyncio.to_thread(_http_get, "::1", gw.data_port, "/v2/health/live")
            assert answer_http.startswith(b"HTTP/1.1 404 ")
            assert gw.grpc is not None
            if transport == "splice":
                assert gw.grpc.splices.pairs >= 1
            else:
                assert gw.grpc.native is not None and gw.grpc.native.connections >= 1
        assert gw.access_log is not None
        gw.access_log.flush()  # to its writer thread, which writes the file soon after

        def grpc_lines() -> list[dict[str, Any]]:
            text = log_path.read_text() if log_path.exists() else ""
            lines = [json.loads(line) for line in text.splitlines()]
            return [line for line in lines if line["path"].startswith("/inference.")]

        await asyncio.to_thread(wait_until, lambda: len(grpc_lines()) >= 3, 10)
        # the client's own address, not the loopback splice's
        assert {line["client"] for line in grpc_lines()} == {"::1"}


async def test_a_preface_in_pieces_is_served_and_a_garbled_one_refused(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], tmp_path: Path
) -> None:
    one, two = upstreams
    async with make_gateway(front_door_config(one, two, tmp_path)) as gw:

        def exchange(*pieces: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", gw.data_port), timeout=10) as conn:
                for piece in pieces:
                    conn.sendall(piece)
                    # separate packets: wait until the gateway has read this one
                    conn.settimeout(0.2)
                    try:
                        first = conn.recv(65536)
                    except TimeoutError:
                        continue
                    finally:
                        conn.settimeout(10)
                    return first
                return conn.recv(65536)

        # split inside the preface: the server's SETTINGS frame comes back (frame type 4)
        answer = await asyncio.to_thread(exchange, H2_PREFACE[:5], H2_PREFACE[5:] + EMPTY_SETTINGS)
        assert len(answer) >= 9 and answer[3] == 4
        # a pair closes with its client's connection
        assert gw.grpc is not None
        front = gw.grpc

        def closed() -> bool:
            return front.splices.pairs == 0 and (front.native is None or front.native.connections == 0)

        await asyncio.to_thread(wait_until, closed, 10)
        # a preface that goes wrong after its request line is an HTTP/1.x error, not a hand-over
        garbled = await asyncio.to_thread(exchange, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + EMPTY_SETTINGS)
        assert garbled.startswith((b"HTTP/1.1 400", b"HTTP/1.1 505"))
        # a request whose first packet could begin a preface ("P") is still HTTP/1.1
        posted = await asyncio.to_thread(
            exchange, b"P", b"OST /v2/repository/index HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n"
        )
        assert posted.startswith(b"HTTP/1.1 ")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel:
            assert await channel.unary_unary("/test.Echo/Unary")(b"still") == b"echo:still"


async def test_alpn_h2_over_tls_reaches_grpc_and_http11_clients_keep_http11(
    make_gateway: Any, tmp_path: Path
) -> None:
    _pki(tmp_path)
    tls = {
        "cert": str(tmp_path / "server.crt"),
        "key": str(tmp_path / "server.key"),
        "client_ca": str(tmp_path / "ca.crt"),
        "client_cert": "optional",
    }
    async with Upstream("one") as one:
        config = gateway_config(
            [one.address],
            listen={"tls": tls},
            routes=[
                {
                    "name": "alice-only",
                    "match": {"grpc_method": "Sleep"},
                    "backend": {"cluster": "up"},
                    "filters": [{"authz": {"tls_subjects": ["CN=alice,O=acme"]}}],
                },
                {"name": "echo", "match": {"grpc_service": "test.Echo"}, "backend": {"cluster": "up"}},
            ],
        )
        async with make_gateway(config) as gw:
            target = f"127.0.0.1:{gw.data_port}"
            async with grpc.aio.secure_channel(target, _credentials(tmp_path, "alice")) as channel:
                assert await channel.unary_unary("/test.Echo/Unary")(b"tls") == b"echo:tls"
                # the certificate the listener verified is the call's identity
                assert await channel.unary_unary("/test.Echo/Sleep")(b"0") == b"slept"
            async with grpc.aio.secure_channel(target, _credentials(tmp_path, "mallory")) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await channel.unary_unary("/test.Echo/Sleep")(b"0")
                assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

            def negotiated() -> str | None:
                context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
                context.set_alpn_protocols(["h2", "http/1.1"])
                with (
                    socket.create_connection(("127.0.0.1", gw.data_port), timeout=10) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
                ):
                    conn.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert _read_all(conn).startswith(b"HTTP/1.1 ")
                    return conn.selected_alpn_protocol()

            # a client that offers both (curl, browsers) keeps HTTP/1.1 for the REST routes
            assert await asyncio.to_thread(negotiated) == "http/1.1"


@pytest.mark.parametrize("transport", ["native", "splice"])
async def test_sigterm_finishes_calls_in_flight_on_the_main_port(tmp_path: Path, transport: str) -> None:
    async with Upstream("one") as one:
        config = gateway_config(
            [one.address],
            listen={"drain_timeout": "10s", "grpc_transport": transport},
            routes=[{"name": "echo", "match": {"grpc_service": "test.Echo"}, "backend": {"cluster": "up"}}],
        )
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        port = config["listen"]["port"]
        gateway = start_gateway(path, port, config["admin"]["port"], tmp_path)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                sleep = channel.unary_unary("/test.Echo/Sleep")
                assert await channel.unary_unary("/test.Echo/Unary")(b"up") == b"echo:up"
                slow = asyncio.gather(*(sleep(b"1.0") for _ in range(8)))
                await wait_until_async(lambda: one.echo.sleeping == 8, message="8 calls in flight upstream")
                gateway.proc.send_signal(signal.SIGTERM)
                assert await slow == [b"slept"] * 8
            assert await asyncio.to_thread(gateway.proc.wait, 15) == 0
        finally:
            gateway.stop()

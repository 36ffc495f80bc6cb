"""Request headers over the limit on the main port's own HTTP/2 transport: the stream is refused
with RESOURCE_EXHAUSTED and the connection serves on."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
from hpack import Decoder, Encoder

from gateway.grpc.h2_client import CallError, H2Clients
from gateway.http.listener import H2_PREFACE
from tests.grpc.front_door_setup import EMPTY_SETTINGS, NATIVE, front_door_config, serving
from tests.grpc.grpc_upstreams import Upstream

ECHO = "/test.Echo/Unary"
# Well over the 64 KiB the transport advertises as SETTINGS_MAX_HEADER_LIST_SIZE.
HUGE = "v" * (100 * 1024)


async def test_grpcio_client_with_huge_metadata_then_a_normal_call_on_the_same_channel(
    make_gateway: Any, native_config: dict[str, Any]
) -> None:
    async with serving(make_gateway, native_config, main_port=True) as (_, channel):
        echo = channel.unary_unary(ECHO)
        assert await echo(b"before", metadata=(("x-small", "s"),)) == b"echo:before"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await echo(b"big", metadata=(("x-big", HUGE),))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "exceed the limit" in (refused.value.details() or "")
        assert await echo(b"after", metadata=(("x-small", "s"),)) == b"echo:after"
        assert channel.get_state() == grpc.ChannelConnectivity.READY


def _frames(kind: int, stream_id: int, block: bytes, end_stream: bool) -> bytes:
    """A header block as HEADERS and CONTINUATION frames of at most 16 KiB (HTTP/2's default)."""
    chunks = [block[at : at + 16384] for at in range(0, len(block), 16384)] or [b""]
    out = b""
    for index, chunk in enumerate(chunks):
        flags = (0x4 if index == len(chunks) - 1 else 0) | (0x1 if end_stream and index == 0 else 0)
        out += len(chunk).to_bytes(3, "big") + bytes((kind if index == 0 else 9, flags))
        out += stream_id.to_bytes(4, "big") + chunk
    return out


def _answers(port: int, sent: bytes, last_stream: int) -> tuple[dict[int, dict[str, str]], bytes, bool]:
    """Sends `sent` on a new connection; the header lists answered per stream, the DATA of
    `last_stream`, and whether a GOAWAY came, read until `last_stream` ends or the socket closes."""
    decoder = Decoder()
    headers: dict[int, dict[str, str]] = {}
    data, goaway = b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(H2_PREFACE + EMPTY_SETTINGS + sent)
        buffer = b""
        while chunk := conn.recv(65536):
            buffer += chunk
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                size, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
                stream_id = int.from_bytes(buffer[5:9], "big")
                payload, buffer = buffer[9 : 9 + size], buffer[9 + size :]
                if kind == 1:
                    answered = {str(name): str(value) for name, value in decoder.decode(payload)}
                    headers.setdefault(stream_id, {}).update(answered)
                elif kind == 0 and stream_id == last_stream:
                    data += payload
                elif kind == 7:
                    goaway = True
                if kind == 1 and flags & 0x1 and stream_id == last_stream:
                    return headers, data, goaway
    return headers, data, goaway


async def test_an_oversized_header_list_keeps_the_hpack_table_in_step(
    make_gateway: Any, native_config: dict[str, Any]
) -> None:
    async with make_gateway(native_config) as gw:
        encoder = Encoder()
        head = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", ECHO),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        # 30 headers of 3 KB, each entered in the dynamic table (evicting the one before): the
        # stream is refused, and the next block refers to the entry the refused one left.
        big = [(f"x-h{index}", "w" * 3000) for index in range(30)]
        refused = encoder.encode(head + big)
        following = encoder.encode([*head, big[-1]])
        assert len(following) < 100  # the big header by its index in the table
        message = b"\x00" + (2).to_bytes(4, "big") + b"hi"
        sent = (
            _frames(1, 1, refused, end_stream=True)
            + _frames(1, 3, following, end_stream=False)
            + len(message).to_bytes(3, "big")
            + b"\x00\x01\x00\x00\x00\x03"
            + message
        )
        headers, data, goaway = await asyncio.to_thread(_answers, gw.data_port, sent, 3)
        assert headers[1]["grpc-status"] == "8"  # RESOURCE_EXHAUSTED, trailers-only
        assert "exceed the limit of 65536 bytes" in headers[1]["grpc-message"]
        assert headers[3]["grpc-status"] == "0" and not goaway
        assert data == b"\x00" + (7).to_bytes(4, "big") + b"echo:hi"

        # A block of over 16 times the limit (1.1 MB as sent) is not buffered: the connection is
        # closed.
        flood = [(f"x-f{index}", "f" * 8000) for index in range(140)]
        headers, _, goaway = await asyncio.to_thread(
            _answers, gw.data_port, _frames(1, 1, Encoder().encode(head + flood, huffman=False), True), 1
        )
        assert goaway and 1 not in headers
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel:
            assert await channel.unary_unary(ECHO)(b"still") == b"echo:still"


async def test_the_own_client_is_refused_on_its_stream_and_its_connection_serves_on(
    make_gateway: Any, native_config: dict[str, Any]
) -> None:
    async with make_gateway(native_config) as gw:
        clients = H2Clients(1 << 20)  # it does not hold back metadata over the server's setting
        address = f"127.0.0.1:{gw.data_port}"
        try:
            assert (await clients.unary(address, ECHO, b"a", (), 10)).message == b"echo:a"
            connection = clients._connections[address]
            with pytest.raises(CallError) as refused:
                await clients.unary(address, ECHO, b"b", (("x-big", HUGE),), 10)
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (await clients.unary(address, ECHO, b"c", (), 10)).message == b"echo:c"
            assert clients._connections[address] is connection and connection.usable
        finally:
            await clients.close()


@pytest.mark.parametrize("port", ["main", "grpc_port"])
async def test_the_metadata_limit_is_listen_max_header_bytes_on_both_grpc_listeners(
    make_gateway: Any, upstreams: tuple[Upstream, Upstream], tmp_path: Path, port: str
) -> None:
    # 4 KiB for request heads: a call whose metadata fits is served, a bigger one refused alike on
    # the main port's own transport and on grpcio's `listen.grpc_port`. Both sizes stay under the
    # test upstream's own limit (grpcio's 8 KiB), so a refusal is the gateway's.
    one, two = upstreams
    config = front_door_config(one, two, tmp_path, max_header_bytes=4 * 1024, **NATIVE)
    async with make_gateway(config) as gw:
        target = gw.data_port if port == "main" else config["listen"]["grpc_port"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{target}") as channel:
            echo = channel.unary_unary(ECHO)
            assert await echo(b"fits", metadata=(("x-data", "v" * 2048),)) == b"echo:fits"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await echo(b"over", metadata=(("x-data", "v" * 6144),))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert await echo(b"after", metadata=(("x-data", "small"),)) == b"echo:after"

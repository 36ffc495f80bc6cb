"""HTTP/1.1 edge cases of the data-path listener, spoken over raw sockets to a real gateway."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import gateway_config
from tests.support.processes import Process

# A raw read waits at most this long for the gateway: far above any healthy answer on loopback.
READ_TIMEOUT_S = 5.0


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case), body (Content-Length, chunked or until close)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if status in (100, 204, 304):
        return status, headers, b""
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), READ_TIMEOUT_S)
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(parts)
    else:
        body = await asyncio.wait_for(reader.read(), READ_TIMEOUT_S)
    return status, headers, body


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True when the gateway closed the connection (EOF) within the read timeout."""
    try:
        return await asyncio.wait_for(reader.read(1), READ_TIMEOUT_S) == b""
    except (ConnectionResetError, TimeoutError):
        return True


@pytest.fixture
def config(upstream_a: Process) -> dict[str, Any]:
    return gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        listen={
            "max_headers": 20,
            "max_header_bytes": 4096,
            "max_body_bytes": 10000,
            "header_timeout": "300ms",
            "idle_timeout": "400ms",
        },
    )


async def test_keep_alive_serves_many_requests_on_one_connection(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        for i in range(5):
            writer.write(f"GET /echo/{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, headers, body = await _read_response(reader)
            assert status == 200
            assert json.loads(body)["path"] == f"/echo/{i}"
            assert "connection" not in headers
        writer.close()


async def test_connection_close_is_honoured(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, headers, _ = await _read_response(reader)
        assert status == 200
        assert headers["connection"] == "close"
        assert await _closed(reader)
        writer.close()


async def test_http10_client_gets_a_complete_answer(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        # A chunked upstream answer must reach an HTTP/1.0 client unchunked, ended by the close.
        writer.write(b"GET /stream?chunks=3&size=10 HTTP/1.0\r\n\r\n")
        status, headers, body = await _read_response(reader)
        assert status == 200
        assert "transfer-encoding" not in headers
        assert body == b"a" * 10 + b"b" * 10 + b"c" * 10
        writer.close()


async def test_http10_keep_alive(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = await _read_response(reader)
        assert status == 200 and headers["connection"] == "keep-alive"
        writer.write(b"GET /echo HTTP/1.0\r\n\r\n")
        status, headers, _ = await _read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        writer.close()


async def test_pipelined_requests_are_answered_in_order(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        # The first is slow: a gateway that answered out of order would send /echo/2 first.
        writer.write(
            b"GET /slow?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /echo/2 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo/3 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        )
        first = json.loads((await _read_response(reader))[2])
        second = json.loads((await _read_response(reader))[2])
        third = json.loads((await _read_response(reader))[2])
        assert first["slow"] is True
        assert second["path"] == "/echo/2"
        assert third["path"] == "/echo/3" and third["body"] == "hello"
        writer.close()


async def test_expect_100_continue(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        status, _, _ = await _read_response(reader)
        assert status == 100
        writer.write(b"ping")
        status, _, body = await _read_response(reader)
        assert status == 200
        echoed = json.loads(body)
        assert echoed["body"] == "ping"
        assert "expect" not in echoed["headers"]
        writer.close()


async def test_expect_100_continue_over_the_limit_is_refused_before_the_body(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n"
        )
        status, _, body = await _read_response(reader)
        assert status == 413
        assert "limit" in json.loads(body)["error"]
        writer.close()


async def test_chunked_request_body_is_forwarded(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"hello ", b"chunked ", b"world"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        status, _, body = await _read_response(reader)
        assert status == 200
        assert json.loads(body)["body"] == "hello chunked world"
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        # Content-Length and Transfer-Encoding together: the classic smuggling vector.
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        # Two different lengths.
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nhello",
        # Not HTTP at all.
        b"HELLO\r\n\r\n",
        # A bare LF inside a header value.
        b"GET /echo HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    ],
)
async def test_malformed_and_smuggling_requests_are_refused(
    make_gateway: Any, config: dict[str, Any], request_bytes: bytes
) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(request_bytes)
        status, headers, body = await _read_response(reader)
        assert status == 400
        assert headers["content-type"] == "application/json"
        assert "error" in json.loads(body)
        assert await _closed(reader)
        writer.close()


async def test_too_many_headers_get_431(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
        writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
        status, _, body = await _read_response(reader)
        assert status == 431
        assert "too many" in json.loads(body)["error"]
        writer.close()


async def test_oversized_headers_get_431(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n")
        status, _, _ = await _read_response(reader)
        assert status == 431
        writer.close()


async def test_body_over_the_limit_gets_413(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000)
        status, _, _ = await _read_response(reader)
        assert status == 413
        writer.close()


async def test_chunked_body_over_the_limit_gets_413(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 4000
        for _ in range(4):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        writer.write(b"0\r\n\r\n")
        status, _, body = await _read_response(reader)
        assert status == 413
        assert json.loads(body)["code"] == "payload_too_large"
        writer.close()


async def test_slowloris_head_is_timed_out(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\n")  # never finishes the head
        status, _, _ = await _read_response(reader)
        assert status == 408
        assert await _closed(reader)
        writer.close()


async def test_idle_keep_alive_connection_is_closed(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await _read_response(reader))[0] == 200
        assert await _closed(reader)  # idle_timeout is 400ms
        writer.close()


async def test_half_closed_client_still_gets_its_answer(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"GET /slow?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n")
        writer.write_eof()
        status, _, body = await _read_response(reader)
        assert status == 200 and json.loads(body)["slow"] is True
        assert await _closed(reader)
        writer.close()


async def test_head_request_gets_headers_only(make_gateway: Any, config: dict[str, Any]) -> None:
    async with make_gateway(config) as gw:
        reader, writer = await _connect(gw.data_port)
        writer.write(b"HEAD /big?size=100 HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        assert head.startswith(b"HTTP/1.1 200")
        # The connection stays usable: the next answer is not confused with a body.
        writer.write(b"GET /echo/after HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = await _read_response(reader)
        assert status == 200 and json.loads(body)["path"] == "/echo/after"
        writer.close()

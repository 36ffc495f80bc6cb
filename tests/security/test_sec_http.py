"""The request line and Host over a real socket: only HTTP/1.0 and 1.1, one Host in HTTP/1.1
(RFC 9112 3.2), and absolute-form targets held to the Host they name."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest

from tests.conftest import gateway_config
from tests.support.raw_echo import RawEcho
from tests.support.raw_http import READ_TIMEOUT_S, read_response, send

KEY = "the-key"


def _config(echo: RawEcho) -> dict[str, Any]:
    guard = {
        "auth_apikey": {"keys": [{"sha256": hashlib.sha256(KEY.encode()).hexdigest(), "principal": "p"}]}
    }
    return gateway_config(
        [echo.endpoint],
        routes=[
            {
                "name": "limited",
                "match": {"prefix": "/limited/"},
                "backend": {"cluster": "up"},
                "filters": [guard],
            },
            {"name": "open", "match": {"prefix": "/"}, "backend": {"cluster": "up"}},
        ],
        listen={"header_timeout": "2s", "idle_timeout": "1s"},
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/2.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),  # HTTP/0.9: no version at all
        (b"GET /\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/0.9\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400),
        (b"GET / http/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nX-Host: t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET ftp://t/x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET http://other/limited/x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET http://t/limited/x HTTP/1.0\r\n\r\n", 400),  # no Host to hold the authority to
    ],
)
async def test_bad_request_lines_are_answered_and_closed(
    make_gateway: Any, request_bytes: bytes, status: int
) -> None:
    async with RawEcho() as echo, make_gateway(_config(echo)) as gw:
        answer = await send(gw.data_port, request_bytes)
        assert answer.status == status, answer.body
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["connection"] == "close"
        assert answer.json()["code"] in ("bad_request", "http_version_not_supported")
        assert echo.targets == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /open HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /open HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",  # empty Host is allowed (RFC 9112 3.2)
        b"GET /open HTTP/1.0\r\n\r\n",  # HTTP/1.0 needs no Host
        b"GET /open HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ],
)
async def test_good_request_lines_are_served(make_gateway: Any, request_bytes: bytes) -> None:
    # The control for the test above: the same gateway serves requests that differ only there.
    async with RawEcho() as echo, make_gateway(_config(echo)) as gw:
        answer = await send(gw.data_port, request_bytes)
        assert answer.status == 200
        assert echo.targets == ["/open"]


async def test_an_absolute_target_is_routed_and_forwarded_by_its_path(make_gateway: Any) -> None:
    async with RawEcho() as echo, make_gateway(_config(echo)) as gw:
        head = b"GET http://T/%6Cimited/./x?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        assert (await send(gw.data_port, head + b"\r\n")).status == 401
        allowed = await send(gw.data_port, head + f"x-api-key: {KEY}\r\n\r\n".encode())
        assert allowed.status == 200
        # The upstream gets origin-form: RFC 9112 3.2.2 leaves absolute-form to proxies' requests.
        assert echo.targets == ["/limited/x?q=1"]
        bare = await send(
            gw.data_port, b"GET https://t:8443 HTTP/1.1\r\nHost: t:8443\r\nConnection: close\r\n\r\n"
        )
        assert bare.status == 200
        assert echo.targets[-1] == "/"


async def test_a_bare_http09_request_line_is_not_left_hanging(make_gateway: Any) -> None:
    # llhttp waits for the headers an HTTP/0.9 line never has: the head-read timeout answers it.
    async with RawEcho() as echo, make_gateway(_config(echo)) as gw:
        answer = await send(gw.data_port, b"GET /\r\n")
        assert answer.status == 408
        assert READ_TIMEOUT_S > 2.0  # the listener's header_timeout above, which answered first
        assert echo.targets == []


async def test_a_refused_request_pipelined_behind_a_good_one_waits_for_its_answer(make_gateway: Any) -> None:
    # Both requests in one packet: the first is parsed (not yet started) when the second is refused.
    # Its answer must come first and alone: a 400 first would read as the answer to the first request.
    async with RawEcho() as echo, make_gateway(_config(echo)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        writer.write(b"GET /open HTTP/1.1\r\nHost: t\r\n\r\nGET /limited%2Fx HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = await read_response(reader)
        assert answer.status == 200
        assert answer.json()["target"] == "/open"
        assert await asyncio.wait_for(reader.read(), READ_TIMEOUT_S) == b""  # then closed
        writer.close()
        assert echo.targets == ["/open"]


@pytest.mark.parametrize(
    "head",
    [
        b"POST /open HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
        b"POST /open HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
)
async def test_a_request_body_that_stops_arriving_is_given_up(make_gateway: Any, head: bytes) -> None:
    async with RawEcho() as echo, make_gateway(_config(echo)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        started = time.monotonic()
        writer.write(head)
        answer = await read_response(reader)
        waited = time.monotonic() - started
        assert answer.status == 408
        assert answer.json()["code"] == "request_timeout"
        # The idle timeout (1 s) and at most two sweeps (0.5 s each) of the listener.
        assert 1.0 <= waited < 1.0 + 2 * 0.5 + 1.0
        assert await asyncio.wait_for(reader.read(), READ_TIMEOUT_S) == b""
        writer.close()


async def test_a_body_cut_short_by_a_half_close_is_answered_at_once(make_gateway: Any) -> None:
    async with RawEcho() as echo, make_gateway(_config(echo)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        started = time.monotonic()
        writer.write(b"POST /open HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        writer.write_eof()
        answer = await read_response(reader)
        assert answer.status == 400
        assert time.monotonic() - started < 1.0  # not the idle timeout
        writer.close()

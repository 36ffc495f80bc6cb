"""The requests the load generators send for a chain: its headers, and a query string per request."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest
from _loadgen import request_maker, run_load
from _wrk import wrk_command

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HEADERS = (("Authorization", "Bearer abc.def.ghi"),)
# wrk runs whole seconds; the test bounds its wait far above that, only so a hang fails the test.
WRK_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def recording_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A keep-alive loopback server answering 200 to every request and keeping each request head."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(OK)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], heads


def _request_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def test_fixed_request_is_the_same_bytes_every_time() -> None:
    make = request_maker("/", "127.0.0.1:9", HEADERS, unique_query=False)

    assert make() is make()
    assert make() == b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n"


def test_unique_query_counts_up_and_keeps_an_existing_query() -> None:
    plain = request_maker("/", "h", (), unique_query=True)
    queried = request_maker("/p?a=1", "h", (), unique_query=True)

    assert [_request_line(plain()) for _ in range(2)] == [b"GET /?n=1 HTTP/1.1", b"GET /?n=2 HTTP/1.1"]
    assert _request_line(queried()) == b"GET /p?a=1&n=1 HTTP/1.1"


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        request_maker("/", "h", (("X-Evil", "a\r\nInjected: 1"),), unique_query=False)


async def test_python_loadgen_sends_the_headers_and_a_new_query_each_time() -> None:
    async with recording_server() as (port, heads):
        result = await run_load(
            f"http://127.0.0.1:{port}/", connections=2, duration_s=0.3, headers=HEADERS, unique_query=True
        )

    assert result.requests > 2 and result.errors == 0
    lines = [_request_line(head) for head in heads]
    assert len(set(lines)) == len(lines)  # no two requests share a cache key
    assert all(_header(head, b"authorization") == b"Bearer abc.def.ghi" for head in heads)


def test_wrk_command_adds_headers_and_the_script() -> None:
    argv = wrk_command("http://127.0.0.1:9/", 32, 10.0, HEADERS, unique_query=True)

    assert argv[argv.index("-H") + 1] == "Authorization: Bearer abc.def.ghi"
    assert argv[argv.index("-s") + 1].endswith("unique_query.lua")
    assert argv[-1] == "http://127.0.0.1:9/"
    assert "-s" not in wrk_command("http://127.0.0.1:9/", 32, 10.0)


async def test_wrk_with_the_script_sends_the_headers_and_a_new_query_each_time() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    async with recording_server() as (port, heads):
        argv = wrk_command(f"http://127.0.0.1:{port}/", 2, 1.0, HEADERS, unique_query=True)
        wrk = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(wrk.communicate(), WRK_TIMEOUT_S)

    assert wrk.returncode == 0, stderr
    lines = [_request_line(head) for head in heads]
    assert len(lines) > 2
    assert len(set(lines)) == len(lines)
    assert all(line.startswith(b"GET /?n=") for line in lines)
    assert all(_header(head, b"authorization") == b"Bearer abc.def.ghi" for head in heads)

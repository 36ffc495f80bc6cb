"""A client that sends bytes exactly as given, for requests no HTTP library would send.

aiohttp and yarl normalise a URL before sending it (`/a/../b` goes out as `/b`), which would test
the client instead of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import orjson

# Far above any healthy answer on loopback, far below the test timeout: a hang fails the test.
READ_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        loaded = orjson.loads(self.body)
        assert isinstance(loaded, dict)
        return loaded


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """One response (Content-Length, chunked, or until the close), each read bounded in time."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status in (100, 204, 304):
        return RawResponse(status, headers, b"")
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), READ_TIMEOUT_S)
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)).strip(), 16)
            if size == 0:
                await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
                break
            parts.append(await asyncio.wait_for(reader.readexactly(size), READ_TIMEOUT_S))
            await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
        body = b"".join(parts)
    else:
        body = await asyncio.wait_for(reader.read(), READ_TIMEOUT_S)
    return RawResponse(status, headers, body)


async def send(port: int, data: bytes) -> RawResponse:
    """Send `data` on a new connection and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await read_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def get(
    port: int, target: str, headers: dict[str, str] | None = None, version: str = "HTTP/1.1"
) -> RawResponse:
    """`GET target` with Host and `Connection: close`, the target sent as given."""
    lines = [f"GET {target} {version}", "Host: gateway.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return await send(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

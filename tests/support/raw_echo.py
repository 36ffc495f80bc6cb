"""An upstream that answers every request with the request target it received, byte for byte.

The aiohttp upstream (tests/support/upstream.py) reports the path after aiohttp decoded it, which
hides what the gateway sent; the security tests need the bytes on the wire. It runs on the test's
own loop, over a real loopback socket, and keeps every target it saw in `targets`.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import orjson

# Longest head or chunk-size line the echo accepts; the gateway's own limit is below this.
MAX_LINE = 1024 * 1024


class RawEcho:
    """`async with RawEcho() as echo:` listens on `echo.port` until the block ends."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> RawEcho:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head[:-4].split(b"\r\n")
                method, target, _ = request_line.split(b" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                body = await _read_body(reader, headers)
                self.targets.append(target.decode("latin-1"))
                payload = orjson.dumps(
                    {"target": target.decode("latin-1"), "method": method.decode(), "body_length": len(body)}
                )
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # the gateway sends no trailers
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get(b"content-length", b"0"))
    return await reader.readexactly(length) if length else b""

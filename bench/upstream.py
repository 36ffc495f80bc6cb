"""A tiny HTTP/1.1 upstream for benchmarks: every request gets the same 2-byte 200 response.

It is as cheap as Python can make it (raw asyncio protocol, httptools parser, uvloop when installed)
so that the proxy under test, not the upstream, dominates what a benchmark measures. The benchmark
prefers nginx as the upstream when nginx is installed; this server is the fallback.

    python bench/upstream.py --port 9000       # prints "upstream listening on 127.0.0.1:9000"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import cast

import httptools

# A fixed, complete response: 2 bytes of body keep it about the size of a health check or a tiny
# inference answer, so the benchmark measures per-request overhead rather than bandwidth.
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
# An HTTP/1.0 client without keep-alive expects the server to close; say so explicitly.
CLOSING_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
)


class FixedResponseProtocol(asyncio.Protocol):
    """One client connection: answer each parsed request, in order, with the fixed response."""

    __slots__ = ("_parser", "_transport")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so this is a cast, not a check.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._close()

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._parser.should_keep_alive():
            transport.write(RESPONSE)
        else:
            transport.write(CLOSING_RESPONSE)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; print the bound address once listening."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedResponseProtocol, host, port, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"upstream listening on {host}:{bound_port}", flush=True)
    async with server:
        await stop.wait()


def _run(host: str, port: int) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, port))
    else:
        uvloop.run(serve(host, port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Answer every HTTP request with a fixed 2-byte 200.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        _run(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""An upstream that answers before a streamed (chunked) request body has been sent whole.

The connection is then still mid-request: the rest of the body is on its way into it. Pooling it
would let the next request's head share a connection with the end of another request's body, which
the upstream would read as a second, garbled request. The gateway must close such a connection.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from tests.conftest import gateway_config
from tests.support.raw_http import read_response

READ_TIMEOUT_S = 5.0  # far above a loopback round trip; a hang fails the test


class EarlyAnswerUpstream:
    """Answers each request as soon as its head arrives, then records every byte of the connection."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []  # per connection, in accept order
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> EarlyAnswerUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        seen = bytearray()
        self.received.append(seen)
        answered = 0
        try:
            while chunk := await reader.read(65536):
                seen.extend(chunk)
                # One answer per request head seen so far, sent at once: never waits for a body.
                while seen.count(b" HTTP/1.1\r\n") > answered:
                    answered += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def test_a_connection_answered_before_its_streamed_body_ended_is_not_reused(make_gateway: Any) -> None:
    async with (
        EarlyAnswerUpstream() as upstream,
        make_gateway(gateway_config([f"127.0.0.1:{upstream.port}"])) as gw,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        try:
            writer.write(
                b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
            )
            first = await read_response(reader)
            assert (first.status, first.body) == (200, b"ok")
            # The answer is in; the body is not. Another request now needs an upstream connection.
            other_reader, other_writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
            try:
                other_writer.write(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
                second = await read_response(other_reader)
                assert (second.status, second.body) == (200, b"ok")
            finally:
                other_writer.close()
            # The rest of the first body arrives only now.
            writer.write(b"4\r\nlate\r\n0\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)  # let the late chunks travel, wherever the gateway sends them
        finally:
            writer.close()
    carrying_next = [bytes(seen) for seen in upstream.received if b"GET /next " in seen]
    assert len(carrying_next) == 1
    # The GET went out on a connection of its own: no piece of the upload's body is on it.
    assert carrying_next[0].startswith(b"GET /next ")
    assert b"late" not in carrying_next[0] and b"first" not in carrying_next[0]

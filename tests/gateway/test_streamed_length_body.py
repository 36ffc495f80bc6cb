"""A request body of known length beyond the retry buffer goes upstream as it arrives.

Up to `RETRY_BUFFER_BYTES` the gateway reads the body whole first, so a retry can send it again;
a longer one is relayed with the client's Content-Length (not re-framed as chunked) while the
client is still sending it, and a body cut short leaves the upstream connection closed, never
pooled half-written.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from gateway.backend import RETRY_BUFFER_BYTES
from tests.conftest import gateway_config
from tests.support.raw_http import read_response

WAIT_S = 10.0  # far above a loopback round trip on a busy machine; a hang fails the test
LONG = RETRY_BUFFER_BYTES + 512 * 1024  # past the retry buffer: streamed
FIRST_PART = 64 * 1024  # what the client sends before it waits for the upstream to see the head


class RecordingUpstream:
    """Reads each request's head and Content-Length body, records them, answers with the length."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.closed_mid_body = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
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
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                try:
                    body = await reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    self.closed_mid_body += 1
                    return
                self.bodies.append(body)
                answer = str(len(body)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _until(condition: Any) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.02)


def _config(port: int) -> dict[str, Any]:
    return gateway_config([f"127.0.0.1:{port}"], listen={"max_body_bytes": 4 * 1024 * 1024})


async def test_a_long_body_reaches_the_upstream_while_the_client_still_sends_it(make_gateway: Any) -> None:
    body = bytes(range(256)) * (LONG // 256)
    async with RecordingUpstream() as upstream, make_gateway(_config(upstream.port)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        try:
            writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
            writer.write(body[:FIRST_PART])
            await writer.drain()
            # Read whole first, the upstream would see nothing until the last byte came.
            await _until(lambda: upstream.heads)
            writer.write(body[FIRST_PART:])
            await writer.drain()
            answer = await asyncio.wait_for(read_response(reader), WAIT_S)
        finally:
            writer.close()
    assert (answer.status, answer.body) == (200, str(len(body)).encode())
    assert upstream.bodies == [body]
    head = upstream.heads[0].lower()
    assert b"content-length: %d\r\n" % len(body) in head
    assert b"transfer-encoding" not in head


async def test_a_long_body_cut_short_closes_the_upstream_connection(make_gateway: Any) -> None:
    async with RecordingUpstream() as upstream, make_gateway(_config(upstream.port)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        try:
            writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % LONG)
            writer.write(b"x" * FIRST_PART)
            await writer.drain()
            await _until(lambda: upstream.heads)
        finally:
            writer.close()  # the client leaves with most of its body unsent
        await _until(lambda: upstream.closed_mid_body == 1)
        # The next request gets a connection of its own and a whole answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        try:
            writer.write(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
            answer = await asyncio.wait_for(read_response(reader), WAIT_S)
        finally:
            writer.close()
    assert (answer.status, answer.body) == (200, b"5")
    assert upstream.bodies == [b"hello"]


async def test_a_body_within_the_retry_buffer_is_read_whole_before_it_is_sent(make_gateway: Any) -> None:
    body = b"y" * (256 * 1024)
    async with RecordingUpstream() as upstream, make_gateway(_config(upstream.port)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
        try:
            writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
            writer.write(body[:FIRST_PART])
            await writer.drain()
            await asyncio.sleep(0.3)  # time for a head to travel, were it sent before the body
            assert upstream.heads == []  # held for a retry: nothing goes before the whole body
            writer.write(body[FIRST_PART:])
            await writer.drain()
            answer = await asyncio.wait_for(read_response(reader), WAIT_S)
        finally:
            writer.close()
    assert (answer.status, answer.body) == (200, str(len(body)).encode())
    assert upstream.bodies == [body]


class StallingUpstream(RecordingUpstream):
    """Reads nothing past a request's head until `go` is set, then reads and answers as above."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        await self.go.wait()
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        self.bodies.append(body)
        answer = str(len(body)).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        writer.close()


async def test_a_streamed_body_is_read_from_the_client_no_faster_than_the_upstream_reads_it(
    make_gateway: Any,
) -> None:
    # Far more than the socket buffers on the way can hold (a few MiB each on loopback), so the
    # client can send it all only if the gateway holds the rest in memory.
    body = b"z" * (48 * 1024 * 1024)
    async with StallingUpstream() as upstream:
        config = gateway_config(
            [f"127.0.0.1:{upstream.port}"],
            listen={"max_body_bytes": 64 * 1024 * 1024},
            cluster={"timeouts": {"request": 30}},  # the upstream's answer waits for the test
        )
        async with make_gateway(config) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port)
            try:
                writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
                await _until(lambda: upstream.heads)
                drained = asyncio.ensure_future(writer.drain())
                await asyncio.sleep(1.0)
                assert not drained.done()  # the gateway stopped reading: the upstream reads nothing
                upstream.go.set()
                await asyncio.wait_for(drained, WAIT_S)
                answer = await asyncio.wait_for(read_response(reader), WAIT_S)
            finally:
                writer.close()
    assert (answer.status, answer.body) == (200, str(len(body)).encode())
    assert upstream.bodies == [body]

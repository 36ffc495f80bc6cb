"""The gateway's own HTTP/2 client for unary calls, against a real grpcio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from gateway.grpc.h2_client import CallError, H2Clients
from tests.support.processes import free_port

PATH = "/test.Echo/Unary"
MAX_MESSAGE = 1 << 20


class _Server:
    """A grpcio server whose unary handler does what the request says."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()
        self.server = grpc.aio.server(handlers=[self._Handler(self)])
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
        def __init__(self, owner: _Server) -> None:
            self.owner = owner

        def service(self, details: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(self.owner.handle)

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        self.seen.append({"metadata": metadata, "remaining": context.time_remaining()})
        if request == b"fail":
            context.set_trailing_metadata((("x-why", "asked"),))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input: 100% é")
        if request.startswith(b"sleep"):
            try:
                await asyncio.sleep(float(request[5:]))
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if request == b"big":
            return b"x" * (MAX_MESSAGE + 1)
        await context.send_initial_metadata((("x-head", "h"), ("x-head-bin", b"\x00\xff")))
        context.set_trailing_metadata((("x-tail", "t"),))
        return b"echo:" + request


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    server = _Server()
    await server.server.start()
    yield server
    await server.server.stop(None)


@pytest.fixture
async def clients() -> AsyncIterator[H2Clients]:
    clients = H2Clients(MAX_MESSAGE)
    yield clients
    await clients.close()


async def test_a_call_carries_its_message_metadata_and_deadline_both_ways(
    server: _Server, clients: H2Clients
) -> None:
    metadata = (("x-user-id", "u1"), ("x-blob-bin", b"\x01\x02\xff"))
    reply = await clients.unary(server.address, PATH, b"hi", metadata, 5.0)
    assert reply.message == b"echo:hi"
    assert dict(reply.initial) == {"x-head": "h", "x-head-bin": b"\x00\xff"}
    assert dict(reply.trailing) == {"x-tail": "t"}
    seen = server.seen[0]
    assert seen["metadata"]["x-user-id"] == "u1"
    assert seen["metadata"]["x-blob-bin"] == b"\x01\x02\xff"
    assert 0.5 < seen["remaining"] <= 5.01  # sent as 5 s, less the time until the handler ran


async def test_many_concurrent_calls_share_one_connection(server: _Server, clients: H2Clients) -> None:
    replies = await asyncio.gather(
        *(clients.unary(server.address, PATH, b"%d" % i, (), 5.0) for i in range(200))
    )
    assert [reply.message for reply in replies] == [b"echo:%d" % i for i in range(200)]
    assert len({seen["metadata"].get("user-agent") for seen in server.seen}) == 1


async def test_a_status_comes_back_with_its_details_and_trailers(server: _Server, clients: H2Clients) -> None:
    with pytest.raises(CallError) as failed:
        await clients.unary(server.address, PATH, b"fail", (), None)
    assert failed.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.value.details == "bad input: 100% é"
    assert dict(failed.value.trailing) == {"x-why": "asked"}
    # and the connection serves the next call
    assert (await clients.unary(server.address, PATH, b"ok", (), None)).message == b"echo:ok"


async def test_a_deadline_resets_the_stream_and_the_server_sees_it(
    server: _Server, clients: H2Clients
) -> None:
    with pytest.raises(CallError) as late:
        await clients.unary(server.address, PATH, b"sleep5", (), 0.2)
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(server.cancelled.wait(), 5)


async def test_a_cancelled_call_cancels_the_server_side(server: _Server, clients: H2Clients) -> None:
    call = asyncio.ensure_future(clients.unary(server.address, PATH, b"sleep5", (), None))
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(server.cancelled.wait(), 5)
    assert (await clients.unary(server.address, PATH, b"ok", (), None)).message == b"echo:ok"


async def test_large_messages_cross_the_windows_and_oversize_answers_are_refused(
    server: _Server, clients: H2Clients
) -> None:
    message = bytes(range(256)) * 3000  # 768 KiB: many frames and window updates each way
    assert (await clients.unary(server.address, PATH, message, (), 5.0)).message == b"echo:" + message
    with pytest.raises(CallError) as oversize:
        await clients.unary(server.address, PATH, b"big", (), 5.0)
    assert oversize.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_no_server_is_unavailable(clients: H2Clients) -> None:
    with pytest.raises(CallError) as refused:
        await clients.unary(f"127.0.0.1:{free_port()}", PATH, b"a", (), 2.0)
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE


async def test_a_server_going_away_finishes_its_calls_and_the_next_call_reconnects(
    server: _Server, clients: H2Clients
) -> None:
    slow = asyncio.ensure_future(clients.unary(server.address, PATH, b"sleep0.3", (), 5.0))
    await asyncio.sleep(0.1)
    await server.server.stop(2.0)  # GOAWAY: the call in flight finishes
    assert (await slow).message == b"echo:sleep0.3"
    with pytest.raises(CallError) as gone:
        await clients.unary(server.address, PATH, b"a", (), 2.0)
    assert gone.value.code == grpc.StatusCode.UNAVAILABLE
    again = grpc.aio.server(handlers=[_Server._Handler(server)])
    again.add_insecure_port(server.address)
    await again.start()
    try:
        assert (await clients.unary(server.address, PATH, b"back", (), 5.0)).message == b"echo:back"
    finally:
        await again.stop(None)


class _PlainHttp2Server(asyncio.Protocol):
    """An HTTP/2 server that is no gRPC server (a proxy's error page): every request is answered
    with the HTTP status its path names (`/429`), with a body or head-only (`/429/head`)."""

    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.h2.initiate_connection()
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                path = dict(event.headers)[b":path"].decode().split("/")
                head_only = path[-1] == "head"
                self.h2.send_headers(event.stream_id, [(":status", path[1])], end_stream=head_only)
                if not head_only:
                    self.h2.send_data(event.stream_id, b"<html>busy</html>", end_stream=True)
        self.transport.write(self.h2.data_to_send())


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("429", grpc.StatusCode.UNAVAILABLE),
        ("503", grpc.StatusCode.UNAVAILABLE),
        ("401", grpc.StatusCode.UNAUTHENTICATED),
        ("403", grpc.StatusCode.PERMISSION_DENIED),
        ("404", grpc.StatusCode.UNIMPLEMENTED),
        ("400", grpc.StatusCode.INTERNAL),
        ("500", grpc.StatusCode.UNKNOWN),
    ],
)
@pytest.mark.parametrize("shape", ["body", "head"])
async def test_an_answer_from_no_grpc_server_maps_its_http_status_as_grpc_does(
    clients: H2Clients, status: str, code: grpc.StatusCode, shape: str
) -> None:
    # gRPC's HTTP-to-gRPC mapping: a 429 or 503 from a proxy on the way is UNAVAILABLE, which the
    # relay retries on another endpoint, like a server that is down.
    server = await asyncio.get_running_loop().create_server(_PlainHttp2Server, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        path = f"/{status}/head" if shape == "head" else f"/{status}/body"
        with pytest.raises(CallError) as refused:
            await clients.unary(f"127.0.0.1:{port}", path, b"a", (), 2.0)
        assert refused.value.code == code
        assert f"HTTP status {status}" in str(refused.value)
    finally:
        server.close()

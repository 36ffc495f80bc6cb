"""The own HTTP/2 client for unary gRPC calls to upstream endpoints, inline on the event loop.

grpcio's aio channel costs about 250 us of one core per unary call (each call crosses from its
completion-queue thread to the event loop and builds several Python objects), as much as its
server side: half of what the front door added per call. This client does what a unary call
needs, with one small object per call and one write per event-loop turn for every call started:

- `H2Clients` (here): one connection per endpoint, many streams each, opened at the first call
  and replaced when it is lost or the server sends GOAWAY;
- `h2_connection.H2Connection`: one connection, its frames, flow control, deadlines and
  cancellation;
- `h2_call`: one call's stream state, and its answer read as a reply or a `CallError`.

Streaming calls stay on grpcio's channels (`channels.py`).
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from gateway.grpc.h2_call import CallError, UnaryReply
from gateway.grpc.h2_connection import H2Connection
from gateway.grpc.metadata import Metadata

__all__ = ["CallError", "H2Clients", "H2Connection", "UnaryReply"]


class H2Clients:
    """One connection per endpoint address, opened at its first call."""

    __slots__ = ("_connecting", "_connections", "_max_message")

    def __init__(self, max_message: int) -> None:
        self._max_message = max_message
        self._connections: dict[str, H2Connection] = {}
        self._connecting: dict[str, asyncio.Future[H2Connection]] = {}

    async def unary(
        self, address: str, path: str, message: bytes, metadata: Metadata, timeout: float | None
    ) -> UnaryReply:
        connection = self._connections.get(address)
        if connection is None or not connection.usable:
            connection = await self._connect(address, timeout)
        return await connection.unary(path, message, metadata, timeout)

    async def _connect(self, address: str, timeout: float | None) -> H2Connection:
        opening = self._connecting.get(address)
        if opening is None:  # the first call opens it, the others wait for the same connection
            opening = self._connecting[address] = asyncio.ensure_future(self._open(address))
            opening.add_done_callback(lambda _: self._connecting.pop(address, None))
        try:
            return await asyncio.wait_for(asyncio.shield(opening), timeout)
        except TimeoutError:
            raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    async def _open(self, address: str) -> H2Connection:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(
                lambda: H2Connection(address, self._max_message), host.strip("[]"), int(port)
            )
        except (OSError, ValueError) as exc:
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"failed to connect to {address}: {exc}") from None
        self._connections[address] = protocol
        return protocol

    async def close(self) -> None:
        connections, self._connections = self._connections, {}
        for opening in self._connecting.values():
            opening.cancel()
        for connection in connections.values():
            connection.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)

"""HTTP/2 connections of the main port, spliced to the gRPC front door's private listener.

The HTTP/1.1 listener (`gateway/http/listener.py`) hands over a connection whose first bytes are the
HTTP/2 preface, or that negotiated ALPN `h2` over TLS. grpcio cannot adopt a socket it did not
accept, so the front door's grpcio server also listens on a private loopback port (opened at the
first such connection, so a gateway that never sees gRPC has none), and each
handed-over connection becomes a pair: the client's transport and a new loopback connection to that
port, with bytes copied both ways as they arrive (TLS, when the client used it, ends at the
listener: the loopback side is cleartext). Backpressure crosses the pair: a side whose writes back
up pauses reading on the other. When either side closes, the other is closed after what it still
has to write, so a GOAWAY and the answers before it reach the client.

The client's address: grpcio sees the pair's loopback connection as the peer. Before the first byte
goes through, the pair is recorded under grpcio's name for that loopback connection
("ipv4:127.0.0.1:PORT"), with the client's own address and certificate subject; the front door's
handlers look the call's peer up and give the relay the client's instead, so routes, filters,
authz and the access log see the same client as over HTTP/1.1. A connection to the private port
that is no pair (another local process) keeps its own loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from gateway.grpc.tls import PeerSubjects

if TYPE_CHECKING:
    from gateway.grpc.relay import Relay

log = logging.getLogger("turnout.grpc")

# Where the front door's private listener is: loopback only, on a port the OS picks.
PRIVATE_HOST = "127.0.0.1"
# The key under which a pair's certificate subject travels in its calls' auth context.
_SUBJECT_KEY = "turnout_tls_subject"


@dataclass(frozen=True, slots=True)
class Origin:
    """The client behind a pair, in the forms the relay reads from grpcio's context."""

    peer: str
    auth: Mapping[str, Sequence[bytes]]


def origin_of(client_ip: str, tls_subject: str | None) -> Origin:
    """The client as the relay reads it from a call's context (peer, auth context)."""
    peer = f"ipv6:[{client_ip}]:0" if ":" in client_ip else f"ipv4:{client_ip}:0"
    auth = {_SUBJECT_KEY: (tls_subject.encode(),)} if tls_subject is not None else {}
    return Origin(peer, auth)


class _Side(asyncio.Protocol):
    """One side of a pair: what it reads goes to the other side's transport."""

    __slots__ = ("other", "pair", "transport")

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's do not subclass Transport

    def data_received(self, data: bytes) -> None:
        other = self.other.transport if self.other is not None else None
        if other is not None:
            other.write(data)
        else:  # the client's, while the loopback side connects (reading paused; this was on its way)
            self.pair.pending.append(data)

    def eof_received(self) -> bool:
        # An HTTP/2 peer that stops sending is done with the connection (streams end with their
        # own END_STREAM flags, never with a half-close): close the pair.
        self.pair.close(self)
        return False

    def pause_writing(self) -> None:
        other = self.other.transport if self.other is not None else None
        if other is not None:
            other.pause_reading()

    def resume_writing(self) -> None:
        other = self.other.transport if self.other is not None else None
        if other is not None:
            other.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pair.close(self)


class _Pair:
    __slots__ = ("client", "key", "pending", "splices", "upstream")

    def __init__(self, splices: Splices, client: asyncio.Transport, first: bytes) -> None:
        self.splices = splices
        self.client = _Side(self)
        self.client.transport = client
        self.upstream = _Side(self)
        # The server may speak first (its SETTINGS), even before the connection is reported made.
        self.upstream.other = self.client
        self.pending = [first] if first else []
        self.key = ""

    def joined(self, key: str) -> None:
        """The loopback side is connected: send what the client sent so far, then read on."""
        self.key = key
        client, upstream = self.client, self.upstream
        client.other = upstream
        assert upstream.transport is not None and client.transport is not None
        for data in self.pending:
            upstream.transport.write(data)
        self.pending = []
        client.transport.resume_reading()

    def close(self, ended: _Side | None = None) -> None:
        """Close both sides: the one that `ended` at once (its peer is done), the other after the
        writes it still holds (a GOAWAY, the last answers)."""
        for side in (self.client, self.upstream):
            transport = side.transport
            if transport is not None and not transport.is_closing():
                if side is ended:
                    transport.abort()
                else:
                    transport.close()
        if self.client.transport is None and self.upstream.transport is None:
            # Forgotten once both are closed, so that stopping the gateway aborts a side still
            # in its TLS shutdown.
            self.splices.forget(self)

    def abort(self) -> None:
        """Close both sides now, without waiting on a TLS shutdown the client may never answer."""
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.abort()


class Splices:
    """The pairs of one gateway process and the clients behind them."""

    def __init__(self) -> None:
        self._port = 0
        # The private listener starts at the first HTTP/2 connection, not with the gateway: one
        # that never sees gRPC opens no port of its own (nor takes one a neighbour just picked).
        self._opener: Callable[[], Awaitable[int]] | None = None
        self._opening: asyncio.Future[int] | None = None
        self._closed = False
        self._pairs: set[_Pair] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._origins: dict[str, Origin] = {}

    def open(self, port: int) -> None:
        """Send pairs to the front door's private listener on `port`."""
        self._port = port

    def open_lazily(self, opener: Callable[[], Awaitable[int]]) -> None:
        """Start the private listener with `opener` (its port) when the first pair needs it."""
        self._opener = opener

    async def refuse_new(self) -> None:
        """Take no new pair (the gateway stops), once a private listener being opened is open."""
        self._closed = True
        if self._opening is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._opening)

    async def _private_port(self) -> int:
        """The private listener's port, opening it first if needed; 0 when there is none."""
        if self._port or self._closed or self._opener is None:
            return self._port
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._opener())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        except Exception:
            log.exception("the gRPC front door's private listener could not start")
            if self._opening is opening:
                self._opening = None  # the next connection tries again
            return 0

    def take(
        self, transport: asyncio.Transport, first: bytes, client_ip: str, tls_subject: str | None
    ) -> None:
        """The listener's `h2` callback: pair the connection with a new loopback connection."""
        pair = _Pair(self, transport, first)
        transport.set_protocol(pair.client)
        if self._closed or (not self._port and self._opener is None):  # not open, or not any more
            transport.close()
            return
        transport.pause_reading()
        self._pairs.add(pair)
        task = asyncio.ensure_future(self._connect(pair, origin_of(client_ip, tls_subject)))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, pair: _Pair, origin: Origin) -> None:
        loop = asyncio.get_running_loop()
        port = await self._private_port()
        if not port:
            pair.close()
            return
        try:
            upstream, _ = await loop.create_connection(lambda: pair.upstream, PRIVATE_HOST, port)
        except OSError as exc:
            log.warning("an HTTP/2 connection could not reach the gRPC front door: %s", exc)
            pair.close()
            return
        client = pair.client.transport
        if client is None or client.is_closing():  # gone while connecting
            upstream.close()
            return
        # Recorded before any byte goes through, so grpcio knows no call of the pair before it.
        key = f"ipv4:{PRIVATE_HOST}:{upstream.get_extra_info('sockname')[1]}"
        self._origins[key] = origin
        pair.joined(key)

    def forget(self, pair: _Pair) -> None:
        self._pairs.discard(pair)
        if pair.key:
            self._origins.pop(pair.key, None)

    def context(self, context: Any) -> Any:
        """The call's grpcio context, telling the client behind the pair as its peer."""
        origin = self._origins.get(context.peer())
        return context if origin is None else _SplicedContext(context, origin)

    def close(self) -> None:
        """Close every pair (after the gRPC server stopped: what is left has nothing in flight)."""
        self._closed = True
        self._port = 0
        for task in list(self._connecting):
            task.cancel()
        for pair in list(self._pairs):
            pair.abort()

    @property
    def pairs(self) -> int:
        return len(self._pairs)


class _SplicedContext:
    """A grpcio servicer context whose peer and auth context are those of the client behind the
    pair; everything else is the call's own."""

    __slots__ = ("_context", "_origin")

    def __init__(self, context: Any, origin: Origin) -> None:
        self._context = context
        self._origin = origin

    def peer(self) -> str:
        return self._origin.peer

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return self._origin.auth

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class SplicedSubjects(PeerSubjects):
    """The certificate subject the listener verified, as the pair recorded it."""

    __slots__ = ()

    def of(self, auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
        subject = auth_context.get(_SUBJECT_KEY)
        return subject[0].decode() if subject else None


async def spliced_unary(relay: Relay, splices: Splices, path: str, request: bytes, context: Any) -> bytes:
    return await relay.unary(path, request, splices.context(context))


async def spliced_stream(
    relay: Relay, splices: Splices, path: str, requests: AsyncIterator[bytes], context: Any
) -> AsyncIterator[bytes]:
    # Closed with this generator, so a client gone mid-stream cancels the relay's upstream call.
    stream = cast(AsyncGenerator[bytes, None], relay.stream(path, requests, splices.context(context)))
    async with contextlib.aclosing(stream) as replies:
        async for reply in replies:
            yield reply

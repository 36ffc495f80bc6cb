"""One HTTP/2 channel per upstream endpoint, shared by every call to it (and one connection of
the gateway's own client for unary calls, `h2_client.py`).

A gRPC channel multiplexes many calls as streams of one connection (and reconnects by itself), so
the gateway balances per call: the endpoint is picked for each call by the cluster's balancer, and
the call goes out on that endpoint's channel. Channels are opened on first use and closed with the
front door: one per endpoint address ever used. A channel to an endpoint that left holds no
connection once grpcio's idle timeout closes it; the channel object itself stays until the front
door closes (closing it sooner would cut calls a replaced runtime still has in flight on it).
"""

from __future__ import annotations

from collections.abc import Awaitable

import grpc

from gateway.grpc.h2_client import H2Clients, UnaryReply
from gateway.grpc.metadata import Metadata


class UpstreamChannels:
    """Channels by endpoint address ("host:port")."""

    __slots__ = ("_channels", "_clients", "_options", "grpc_addresses")

    def __init__(self, max_message_bytes: int) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.grpc_addresses: dict[str, str] = {}
        """An endpoint's gRPC address by its HTTP address (endpoints with a `grpc_port`): replaced
        whole when the config changes."""
        # The upstream may answer as much as a client may send: a limit stricter than the front
        # door's would fail calls the front door accepted.
        self._options = (
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        )
        # Unary calls go out on the gateway's own HTTP/2 client (`h2_client.py`): grpcio's
        # channel costs as much CPU per call as the rest of the relay together.
        self._clients = H2Clients(max_message_bytes)

    def unary(
        self, address: str, path: str, message: bytes, metadata: Metadata, timeout: float | None
    ) -> Awaitable[UnaryReply]:
        """One unary call to the endpoint at `address`; raises `h2_client.CallError` unless OK."""
        address = self.grpc_addresses.get(address, address)
        return self._clients.unary(address, path, message, metadata, timeout)

    def get(self, address: str) -> grpc.aio.Channel:
        address = self.grpc_addresses.get(address, address)
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(grace=None)
        await self._clients.close()

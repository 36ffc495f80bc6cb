"""One HTTP/2 channel per upstream endpoint, shared by every call to it.

A gRPC channel multiplexes many calls as streams of one connection (and reconnects by itself), so
the gateway balances per call: the endpoint is picked for each call by the cluster's balancer, and
the call goes out on that endpoint's channel. Channels are opened on first use and closed with the
front door; a channel to an endpoint that left its cluster is closed by `close_unused`.
"""

from __future__ import annotations

from collections.abc import Collection

import grpc


class UpstreamChannels:
    """Channels by endpoint address ("host:port")."""

    __slots__ = ("_channels", "_options")

    def __init__(self, max_message_bytes: int) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        # The upstream may answer as much as a client may send: a limit stricter than the front
        # door's would fail calls the front door accepted.
        self._options = (
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        )

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    async def close_unused(self, current: Collection[str]) -> None:
        """Close the channels of endpoints no cluster has any more (their calls are done)."""
        for address in [a for a in self._channels if a not in current]:
            await self._channels.pop(address).close(grace=None)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(grace=None)

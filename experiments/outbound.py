"""A request the experiments package asks the gateway to send (a shadow copy, a smoke check).

The package never opens connections itself: the gateway passes in a `Send` callable that forwards a
request to a named cluster through its normal data path and returns (status, body, latency seconds).
Tests pass a function that talks to a loopback server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


Send = Callable[[str, OutboundRequest], Awaitable[tuple[int, bytes, float]]]
"""send(cluster, request) -> (status, body, latency_s); raises on transport failure."""

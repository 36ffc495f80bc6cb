"""How an upstream connection writes a request: one buffer for a small body, head and body apart
(one writev, the body not copied) for a large one; either way the upstream gets the same bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from gateway.http.pool import EndpointPool
from gateway.http.upstream import ResponseHead, UpstreamConnection, UpstreamFailure

HEAD = b"POST /v2/models/m/infer HTTP/1.1\r\nhost: m\r\ncontent-length: %d\r\n\r\n"


@dataclass
class RecordingTransport:
    """Keeps each call's buffers: one per `write`, several per `writelines`."""

    calls: list[tuple[bytes, ...]] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.calls.append((data,))

    def writelines(self, data: Iterable[bytes]) -> None:
        self.calls.append(tuple(data))

    def is_closing(self) -> bool:
        return False


class Observer:
    def on_head(self, head: ResponseHead) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_end(self) -> None: ...
    def on_error(self, failure: UpstreamFailure) -> None: ...
    def on_data_processed(self) -> None: ...


@pytest.mark.parametrize(
    ("size", "buffers"),
    [(0, 1), (97, 1), (16 * 1024 - 1, 1), (16 * 1024, 2), (1024 * 1024, 2)],
)
async def test_the_upstream_gets_head_and_body_and_a_large_one_is_not_copied(size: int, buffers: int) -> None:
    # A real pool (the compiled connection takes no stand-in); it never connects anywhere here.
    pool = EndpointPool(asyncio.get_running_loop(), "127.0.0.1", 9, 1, 1.0, 60.0)
    conn = UpstreamConnection(pool)
    transport = RecordingTransport()
    conn.connection_made(cast(Any, transport))
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    head = HEAD % size
    conn.send_request(head, body or None, False, 30.0, Observer())
    assert len(transport.calls) == 1
    sent = transport.calls[0]
    assert len(sent) == buffers and b"".join(sent) == head + body
    if buffers == 2:
        assert sent[1] is body  # handed to the transport as it is, not joined to the head

"""Each phase of the data path, alone, without sockets: a real in-process gateway whose client and
upstream connections run over fake transports (as bench/hotpath.py does), so a test feeds exact
bytes to one side and reads exact bytes from the other, and can make a transport fail on purpose.

    request phase      a filter's edits reach the upstream head; a filter's answer reaches no upstream
    backend            a full circuit breaker answers 503 before any endpoint is picked
    upstream attempt   a 503 is retried on the other endpoint, which is credited; the first is charged
    response phase     a response hook that raises: 500 naming it, the connection dropped, no charge
    finish             a client whose socket fails mid-stream: connection closed, finish once, no charge
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.http.listener import HttpConnection
from gateway.http.upstream import UpstreamConnection
from gateway.loading import load_gateway_config
from gateway.server import Gateway
from tests.conftest import gateway_config

# Two endpoints nobody listens on: every upstream byte goes through the fake transports below.
ENDPOINTS = ["127.0.0.1:9", "127.0.0.2:9"]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"
# Retries wait a backoff; a millisecond keeps the tests quick and still goes through the timer.
FAST_RETRY = {"attempts": 1, "on": [503], "backoff_base": "1ms", "backoff_max": "1ms"}


@dataclass
class FakeTransport:
    """Keeps what is written; `fail_after` writes later, every write raises (a dying socket)."""

    written: list[bytes] = field(default_factory=list)
    closed: bool = False
    fail_after: int | None = None

    def write(self, data: bytes) -> None:
        if self.fail_after is not None and len(self.written) >= self.fail_after:
            raise OSError("the socket broke")
        self.written.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    @property
    def data(self) -> bytes:
        return b"".join(self.written)


@dataclass
class Harness:
    gateway: Gateway
    upstreams: dict[str, tuple[UpstreamConnection, FakeTransport]]

    def client(self, fail_after: int | None = None) -> tuple[HttpConnection, FakeTransport]:
        assert self.gateway.listener is not None
        connection = HttpConnection(self.gateway.listener)
        transport = FakeTransport(fail_after=fail_after)
        connection.connection_made(transport)  # type: ignore[arg-type]
        return connection, transport

    def endpoint(self, address: str) -> dict[str, Any]:
        cluster = self.gateway.runtime.clusters["up"]
        return next(e for e in cluster.endpoints.snapshot() if e["address"] == address)

    def sent_to(self) -> list[str]:
        return [address for address, (_, transport) in self.upstreams.items() if transport.written]

    def route_requests(self) -> int:
        return sum(self.gateway.runtime.routes[0].metrics.requests)


@asynccontextmanager
async def harness(tmp_path: Path, **config: Any) -> AsyncIterator[Harness]:
    """A gateway whose cluster `up` has one idle pooled connection per endpoint, over fakes."""
    settings = gateway_config(ENDPOINTS, **config)
    settings["clusters"]["up"].setdefault("balancer", "round_robin")
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(settings))
    gateway = Gateway(load_gateway_config(path))
    await gateway.start()
    try:
        cluster = gateway.runtime.clusters["up"]
        upstreams = {}
        for endpoint in cluster.endpoints.endpoints:
            pool = cluster.pool_for(endpoint)
            upstream = UpstreamConnection(pool)
            transport = FakeTransport()
            upstream.connection_made(transport)  # type: ignore[arg-type]
            pool._open += 1  # a connection the pool believes it opened: idle, keep-alive
            pool._all.add(upstream)
            pool.put_idle(upstream)
            upstreams[endpoint.address] = (upstream, transport)
        yield Harness(gateway, upstreams)
    finally:
        await gateway.shutdown(0.1)


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def _body(data: bytes) -> Any:
    return json.loads(data.partition(b"\r\n\r\n")[2])


def _route(filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": "r", "match": {"prefix": "/"}, "backend": {"cluster": "up"}, "filters": filters}]


async def test_request_phase_edits_reach_the_upstream_head(tmp_path: Path) -> None:
    edit = {"set": {"x-tenant": "acme"}, "remove": ["x-secret"], "path": "/edited"}
    filters = [{"plugin": "tests.support.editing_filters:EDITOR", "config": edit}]
    async with harness(tmp_path, routes=_route(filters)) as h:
        client, transport = h.client()
        client.data_received(b"GET /original HTTP/1.1\r\nHost: x\r\nX-Secret: 1\r\nX-Tenant: evil\r\n\r\n")
        [address] = h.sent_to()
        upstream, upstream_transport = h.upstreams[address]
        head = upstream_transport.data.decode()
        assert head.startswith("GET /edited HTTP/1.1\r\n")
        assert "x-tenant: acme\r\n" in head and "X-Tenant" not in head and "X-Secret" not in head
        upstream.data_received(OK)
        assert _status(transport.data) == 200 and transport.data.endswith(b"ok")


async def test_a_filter_answer_reaches_no_upstream(tmp_path: Path) -> None:
    filters = [{"plugin": "tests.support.plugins:GUARD", "config": {"header": "x-pass"}}]
    async with harness(tmp_path, routes=_route(filters)) as h:
        client, transport = h.client()
        client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(transport.data) == 401
        assert h.sent_to() == [] and h.route_requests() == 1


async def test_backend_refuses_when_the_breaker_is_full(tmp_path: Path) -> None:
    async with harness(tmp_path, cluster={"circuit_breaker": {"max_concurrent": 1}}) as h:
        first, first_transport = h.client()
        first.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")  # in flight, unanswered
        second, second_transport = h.client()
        second.data_received(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(second_transport.data) == 503
        assert b"x-turnout-overloaded: 1" in second_transport.data
        assert len(h.sent_to()) == 1 and first_transport.written == []


async def test_the_attempt_retries_a_503_on_the_other_endpoint(tmp_path: Path) -> None:
    async with harness(tmp_path, cluster={"retry": FAST_RETRY}) as h:
        client, transport = h.client()
        client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [first] = h.sent_to()
        h.upstreams[first][0].data_received(UNAVAILABLE)
        await asyncio.sleep(0.05)  # the backoff
        [second] = [address for address in h.sent_to() if address != first]
        h.upstreams[second][0].data_received(OK)
        assert _status(transport.data) == 200
        assert h.endpoint(first)["total_failures"] == 1 and h.endpoint(second)["total_failures"] == 0
        assert h.gateway.runtime.clusters["up"].retries == 1
        assert h.upstreams[first][1].closed  # the abandoned exchange's connection is not reused


async def test_a_chunked_body_over_the_limit_is_a_413_that_never_charges_the_endpoint(tmp_path: Path) -> None:
    async with harness(tmp_path, listen={"max_body_bytes": 16}) as h:
        client, transport = h.client()
        client.data_received(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
        )
        await asyncio.sleep(0.01)  # the body is pumped upstream by a task
        [address] = h.sent_to()
        client.data_received(b"10\r\n1234567890abcdef\r\n")  # 24 bytes: over the limit
        await asyncio.sleep(0.01)
        assert _status(transport.data) == 413
        assert h.upstreams[address][1].closed  # the half-sent request is not left to the upstream
        await asyncio.sleep(0.01)
        endpoint = h.endpoint(address)
        assert endpoint["total_failures"] == 0 and endpoint["inflight"] == 0
        assert h.route_requests() == 1


async def test_a_failing_response_hook_is_a_500_and_never_charges_the_endpoint(tmp_path: Path) -> None:
    filters = [
        {"plugin": "tests.support.faulty_filters:FAULTY", "config": {"phase": "response", "path": "/"}}
    ]
    async with harness(tmp_path, routes=_route(filters)) as h:
        client, transport = h.client()
        client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [address] = h.sent_to()
        upstream, upstream_transport = h.upstreams[address]
        upstream.data_received(OK)
        assert _status(transport.data) == 500
        assert _body(transport.data)["code"] == "filter_error"
        assert upstream_transport.closed
        endpoint = h.endpoint(address)
        assert endpoint["total_failures"] == 0 and endpoint["inflight"] == 0
        assert h.route_requests() == 1


async def test_a_client_socket_that_fails_mid_stream_ends_the_request_once(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        client, transport = h.client(fail_after=1)
        client.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        [address] = h.sent_to()
        upstream, upstream_transport = h.upstreams[address]
        upstream.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        assert _status(transport.data) == 200  # the head and the first chunk went out
        upstream.data_received(b"6\r\nsecond\r\n")  # this write fails: the answer had started
        assert transport.closed and upstream_transport.closed
        endpoint = h.endpoint(address)
        assert endpoint["total_failures"] == 0 and endpoint["inflight"] == 0
        upstream.data_received(b"0\r\n\r\n")  # whatever still arrives changes nothing
        assert h.route_requests() == 1  # finish ran exactly once
        again, _ = h.client()
        again.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(h.sent_to()) == 2  # the gateway goes on, on the other (idle) connection

"""The public filter contract, end to end: what a filter leaves in `ctx.headers`, `ctx.path` and
`ctx.query` is what the upstream receives, what it leaves in the response is what the client
receives, hooks are awaited by what they return, every filter is named, and the optional
capabilities are declared types that third-party filters implement like built-in ones.

The upstream here is a raw socket server that keeps every request head byte for byte, so a header
line the gateway forgot to drop cannot hide behind a parser that keeps only the last copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from gateway.core.filters import InvalidatesCache, UpstreamLayer, UsesModelMetadata
from tests.conftest import gateway_config
from tests.support.editing_filters import CachingEditor
from tests.support.processes import Process

EDITOR = "tests.support.editing_filters:EDITOR"
_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


class RawUpstream:
    """Keeps the head of each request it gets (requests here have no body) and answers 200 "ok"."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.heads.append(head)
                writer.write(_ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def lines(self, index: int = -1) -> list[str]:
        """The request line and header lines of one request, as sent."""
        return self.heads[index].decode("latin-1").split("\r\n")[:-2]

    def header_values(self, name: str, index: int = -1) -> list[str]:
        return [
            line.partition(":")[2].strip()
            for line in self.lines(index)[1:]
            if line.partition(":")[0].lower() == name
        ]


@asynccontextmanager
async def raw_upstream() -> AsyncIterator[tuple[RawUpstream, int]]:
    upstream = RawUpstream()
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield upstream, port
    finally:
        server.close()
        await server.wait_closed()


def _route(filters: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    return [
        {"name": "r", "match": {"prefix": "/"}, "backend": {"cluster": "up"}, "filters": filters, **extra}
    ]


@pytest.mark.parametrize("deferred", [False, True], ids=["plain", "returns-awaitable"])
async def test_request_phase_edits_are_what_the_upstream_receives(make_gateway: Any, deferred: bool) -> None:
    edit = {
        "set": {"x-added": "yes", "x-replaced": "new", "host": "models.internal"},
        "remove": ["x-remove-me", "cookie"],
        "path": "/v2/models/edited path",
        "query": "a=1&b=two words",
        "deferred": deferred,
    }
    async with raw_upstream() as (upstream, port):
        config = gateway_config([f"127.0.0.1:{port}"], routes=_route([{"plugin": EDITOR, "config": edit}]))
        async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
            headers = [
                ("X-Remove-Me", "secret"),
                ("X-Replaced", "old-1"),
                ("X-Replaced", "old-2"),
                ("Cookie", "a=b"),
                ("X-Kept", "Kept As Sent"),
            ]
            async with session.get(
                f"http://127.0.0.1:{gw.data_port}/original?x=1", headers=headers
            ) as answer:
                assert answer.status == 200
    assert upstream.lines()[0] == "GET /v2/models/edited%20path?a=1&b=two%20words HTTP/1.1"
    assert upstream.header_values("x-added") == ["yes"]
    assert upstream.header_values("x-replaced") == ["new"]  # both client copies replaced
    assert upstream.header_values("x-remove-me") == [] and upstream.header_values("cookie") == []
    assert upstream.header_values("host") == ["models.internal"]
    assert "X-Kept: Kept As Sent" in upstream.lines()  # untouched lines go as the client wrote them


async def test_a_route_without_request_filters_forwards_the_client_head_as_sent(make_gateway: Any) -> None:
    async with raw_upstream() as (upstream, port):
        config = gateway_config([f"127.0.0.1:{port}"])
        async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{gw.data_port}/a%20b?q=%20x"
            async with session.get(url, headers=[("X-Two", "1"), ("X-Two", "2")]) as answer:
                assert answer.status == 200
    assert upstream.lines()[0] == "GET /a%20b?q=%20x HTTP/1.1"
    assert upstream.header_values("x-two") == ["1", "2"]


async def test_framing_and_forwarding_headers_stay_the_gateways(make_gateway: Any) -> None:
    edit = {"set": {"content-length": "99", "transfer-encoding": "chunked", "x-forwarded-for": "10.0.0.1"}}
    async with raw_upstream() as (upstream, port):
        config = gateway_config([f"127.0.0.1:{port}"], routes=_route([{"plugin": EDITOR, "config": edit}]))
        async with (
            make_gateway(config) as gw,
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{gw.data_port}/x") as answer,
        ):
            assert answer.status == 200
    assert (
        upstream.header_values("content-length") == [] and upstream.header_values("transfer-encoding") == []
    )
    # A filter's x-forwarded-for is the chain the gateway appends the client to.
    assert upstream.header_values("x-forwarded-for") == ["10.0.0.1, 127.0.0.1"]


async def test_a_header_value_that_could_smuggle_lines_never_reaches_the_upstream(make_gateway: Any) -> None:
    edit = {"set": {"x-note": "a\r\nx-admin: 1"}}
    async with raw_upstream() as (upstream, port):
        config = gateway_config([f"127.0.0.1:{port}"], routes=_route([{"plugin": EDITOR, "config": edit}]))
        async with (
            make_gateway(config) as gw,
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{gw.data_port}/x") as answer,
        ):
            assert answer.status == 500
    assert upstream.heads == []


@pytest.mark.parametrize("deferred", [False, True], ids=["plain", "returns-awaitable"])
async def test_response_phase_edits_are_what_the_client_receives(
    make_gateway: Any, upstream_a: Process, deferred: bool
) -> None:
    edit = {"status": 203, "answer_header": "by-filter", "deferred": deferred}
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"], routes=_route([{"plugin": EDITOR, "config": edit}])
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        for path in ("/echo", "/stream?chunks=3&ms=10"):
            async with session.get(f"http://127.0.0.1:{gw.data_port}{path}") as answer:
                assert answer.status == 203
                assert answer.headers["x-edited"] == "by-filter"
                assert await answer.read()


async def test_every_filter_is_named_by_its_key_or_path_and_numbered_when_repeated(
    make_gateway: Any, upstream_a: Process
) -> None:
    filters: list[dict[str, Any]] = [
        {"plugin": EDITOR, "config": {"set": {"x-a": "1"}}},
        {"transform": {"request_headers": {"add": {"x-b": "2"}}}},
        {"plugin": EDITOR, "config": {"set": {"x-c": "3"}}},
    ]
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=_route(filters))
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        assert [f.name for f in gw.runtime.routes[0].filters.filters] == [EDITOR, "transform", f"{EDITOR}#2"]
        async with session.get(f"http://127.0.0.1:{gw.data_port}/echo") as answer:
            seen = (await answer.json())["headers"]
        assert (seen["x-a"], seen["x-b"], seen["x-c"]) == ("1", "2", "3")
        async with session.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as answer:
            metrics = await answer.text()
    assert f'turnout_filter_seconds_count{{filter="{EDITOR}#2",phase="request",route="r"}} 1.0' in metrics


async def test_capabilities_are_declared_types_a_plugin_implements(
    make_gateway: Any, upstream_a: Process
) -> None:
    filters = [{"plugin": "tests.support.editing_filters:CACHING_EDITOR"}]
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=_route(filters))
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        plugin = gw.runtime.routes[0].filters.filters[0]
        assert isinstance(plugin, InvalidatesCache)
        url = f"http://127.0.0.1:{gw.admin_port}/admin/cache/invalidate?model=risk"
        async with session.post(url, json={}) as answer:
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["removed"] == 3
        assert isinstance(plugin, CachingEditor) and plugin.invalidated == ["risk"]


def test_built_in_filters_declare_their_capabilities() -> None:
    from prometheus_client import CollectorRegistry

    from gateway.core.filters import BuildContext
    from plugins import FACTORIES

    build = BuildContext(route="r", cluster="up", registry=CollectorRegistry())

    def made(name: str, options: dict[str, Any]) -> object:
        factory = FACTORIES[name]
        return factory(factory.config_model.model_validate(options), build)

    assert isinstance(made("batching", {"max_batch_size": 4}), UpstreamLayer)
    assert isinstance(made("cache", {}), InvalidatesCache)
    assert isinstance(made("validate", {"oip_v2": True}), UsesModelMetadata)
    assert not isinstance(made("transform", {}), UpstreamLayer | InvalidatesCache | UsesModelMetadata)

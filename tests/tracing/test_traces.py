"""Traces end to end: a gateway process exports OTLP/HTTP to a receiver on loopback.

The upstream here fails the first try of each /flaky/ path (so the gateway retries), answers OIP v2
inference for the batching route, and records the traceparent of every request it sees.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.support.processes import GatewayProcess, free_port, start_gateway
from tests.tracing.otlp_receiver import CLIENT, SERVER, ReceivedSpan, otlp_receiver


@dataclass
class Upstream:
    port: int
    traceparents: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


@asynccontextmanager
async def _upstream() -> AsyncIterator[Upstream]:
    upstream = Upstream(free_port())
    failed: set[str] = set()

    async def flaky(request: web.Request) -> web.Response:
        upstream.traceparents[request.path].append(request.headers.get("traceparent", ""))
        if request.path not in failed:
            failed.add(request.path)
            return web.json_response({"error": "first try fails"}, status=503)
        return web.json_response({"ok": True})

    async def echo(request: web.Request) -> web.Response:
        upstream.traceparents[request.path].append(request.headers.get("traceparent", ""))
        return web.json_response({"path": request.path})

    async def infer(request: web.Request) -> web.Response:
        upstream.traceparents[request.path].append(request.headers.get("traceparent", ""))
        rows = (await request.json())["inputs"][0]["shape"][0]
        output = {"name": "y", "datatype": "FP32", "shape": [rows, 1], "data": [1.0] * rows}
        return web.json_response({"model_name": request.match_info["model"], "outputs": [output]})

    app = web.Application()
    app.router.add_route("*", "/flaky/{key}", flaky)
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", upstream.port).start()
    try:
        yield upstream
    finally:
        await runner.cleanup()


def _config(upstream_port: int, collector: str, state: Path) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "access_log": {"enabled": False},
        "tracing": {"enabled": True, "sampling_ratio": 1.0, "endpoint": collector, "service_name": "gw"},
        "clusters": {
            "up": {
                "endpoints": [f"127.0.0.1:{upstream_port}"],
                # A wide window, so a busy machine still merges the concurrent requests below.
                "retry": {"attempts": 1, "on": [503], "backoff_base": 0.001, "backoff_max": 0.002},
                "outlier": {"consecutive_failures": 0},
            },
            "again": {"endpoints": [f"127.0.0.1:{upstream_port}"]},
        },
        "state": {"sqlite_path": str(state / "events.db")},
        "experiments": {
            "exp": {
                "kind": "ab",
                "unit": ["header:x-user-id"],
                "arms": {
                    "control": {"cluster": "up", "weight": 50},
                    "treatment": {"cluster": "again", "weight": 50},
                },
            }
        },
        "routes": [
            {"name": "ab", "match": {"prefix": "/ab/"}, "backend": {"experiment": "exp"}},
            {
                "name": "infer",
                "match": {"prefix": "/v2/"},
                "backend": {"cluster": "up"},
                "filters": [{"batching": {"max_batch_size": 8, "max_queue_delay": 0.2}}],
            },
            {
                "name": "api",
                "match": {"prefix": "/"},
                "backend": {"cluster": "up"},
                "filters": [{"cors": {}}],
            },
        ],
    }


async def _start(config: dict[str, Any], tmp_path: Path) -> GatewayProcess:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    port, admin = config["listen"]["port"], config["admin"]["port"]
    # In a thread: the upstream and the receiver run on this loop while the gateway starts.
    return await asyncio.to_thread(start_gateway, path, port, admin, tmp_path)


def _traceparent(trace_id: str, parent: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id and s.trace_id == parent.trace_id]


def _server_span(spans: list[ReceivedSpan], trace_id: str) -> ReceivedSpan:
    (server,) = [s for s in spans if s.trace_id == trace_id and s.kind == SERVER]
    return server


async def test_a_retried_request_and_batched_requests_as_span_trees(tmp_path: Path) -> None:
    async with otlp_receiver() as receiver, _upstream() as upstream:
        gateway = await _start(_config(upstream.port, receiver.endpoint, tmp_path), tmp_path)
        try:
            async with aiohttp.ClientSession() as session:
                unsampled = secrets.token_hex(16)
                client_span = secrets.token_hex(8)
                headers = {"traceparent": _traceparent(unsampled, client_span, sampled=False)}
                async with session.get(f"{gateway.url}/echo/unsampled", headers=headers) as response:
                    assert response.status == 200
                async with session.get(f"{gateway.url}/echo/fresh") as response:
                    assert response.status == 200

                retried = secrets.token_hex(16)
                headers = {"traceparent": _traceparent(retried, client_span)}
                async with session.get(f"{gateway.url}/flaky/one", headers=headers) as response:
                    assert response.status == 200, await response.text()

                batched = [secrets.token_hex(16) for _ in range(3)]
                body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}

                async def infer(trace_id: str) -> int:
                    headers = {"traceparent": _traceparent(trace_id, secrets.token_hex(8))}
                    url = f"{gateway.url}/v2/models/m/infer"
                    async with session.post(url, json=body, headers=headers) as response:
                        return response.status

                assert await asyncio.gather(*(infer(t) for t in batched)) == [200, 200, 200]

                assigned = secrets.token_hex(16)
                headers = {"traceparent": _traceparent(assigned, client_span), "x-user-id": "u1"}
                async with session.get(f"{gateway.url}/ab/x", headers=headers) as response:
                    assert response.status == 200
                    arm = response.headers["x-turnout-arm"]

            def complete(spans: list[ReceivedSpan]) -> bool:
                servers = {s.trace_id for s in spans if s.kind == SERVER}
                # and every call of a batch has its attempt span (named by the traceparent it sent)
                batch_attempts = [s for s in spans if s.kind == CLIENT and s.trace_id in batched]
                calls = upstream.traceparents["/v2/models/m/infer"]
                return {retried, assigned, *batched} <= servers and len(batch_attempts) >= len(calls)

            spans = await receiver.wait_for(complete)
        finally:
            assert gateway.stop() == 0, gateway.log()

    # The retried request: one server span continuing the client's trace, two attempts under it.
    server = _server_span(spans, retried)
    assert server.parent_id == client_span
    assert server.service == "gw"
    assert server.name == "GET api"
    assert server.attributes["http.route"] == "api"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["turnout.retries"] == 1
    children = _children(spans, server)
    attempts = sorted((s for s in children if s.kind == CLIENT), key=lambda s: s.start_ns)
    assert [a.attributes["turnout.attempt"] for a in attempts] == [0, 1]
    assert [a.attributes["http.response.status_code"] for a in attempts] == [503, 200]
    assert [a.error for a in attempts] == [True, False]
    assert {a.attributes["turnout.endpoint"] for a in attempts} == {f"127.0.0.1:{upstream.port}"}
    assert attempts[0].end_ns <= attempts[1].start_ns
    # Each try carried a traceparent naming its own attempt span, in the client's trace.
    assert upstream.traceparents["/flaky/one"] == [_traceparent(retried, a.span_id) for a in attempts]
    names = {s.name for s in children}
    assert {"filter cors request", "filter cors response"} <= names
    for child in children:
        assert server.start_ns <= child.start_ns <= child.end_ns <= server.end_ns

    # Batched requests: each has its queue wait and its batch's call; members of a batch agree.
    members: dict[object, int] = defaultdict(int)
    for trace_id in batched:
        server = _server_span(spans, trace_id)
        by_name = {s.name: s for s in _children(spans, server)}
        wait, call = by_name["batch queue wait"], by_name["batch upstream call"]
        assert wait.end_ns <= call.start_ns + 1_000  # within the nanoseconds lost converting clocks
        assert server.start_ns <= wait.start_ns and call.end_ns <= server.end_ns
        members[wait.attributes["turnout.batch.id"]] += 1
        assert wait.attributes["turnout.batch.members"] == call.attributes["turnout.batch.members"]
    for trace_id in batched:
        wait = next(
            s for s in _children(spans, _server_span(spans, trace_id)) if s.name == "batch queue wait"
        )
        assert wait.attributes["turnout.batch.members"] == members[wait.attributes["turnout.batch.id"]]
    # The batch's own upstream call: an attempt span per batch, under one member's server span,
    # and the traceparent the batch sent names it.
    batch_calls = upstream.traceparents["/v2/models/m/infer"]
    assert len(batch_calls) == len(members)
    for traceparent in batch_calls:
        _, trace_id, parent, flags = traceparent.split("-")
        assert trace_id in batched and int(flags, 16) & 1
        (attempt,) = [s for s in spans if s.trace_id == trace_id and s.span_id == parent]
        assert (attempt.kind, attempt.name) == (CLIENT, "upstream attempt")
        server = _server_span(spans, trace_id)
        assert attempt.parent_id == server.span_id
        assert attempt.attributes["turnout.attempt"] == 0
        assert attempt.attributes["http.response.status_code"] == 200
        assert attempt.attributes["turnout.endpoint"] == f"127.0.0.1:{upstream.port}"
        assert server.start_ns <= attempt.start_ns <= attempt.end_ns <= server.end_ns

    # The experiment's assignment, with the arm the client was told.
    server = _server_span(spans, assigned)
    (assignment,) = [s for s in _children(spans, server) if s.name == "experiment assignment"]
    assert assignment.attributes == {"turnout.experiment": "exp", "turnout.arm": arm}
    (attempt,) = [s for s in _children(spans, server) if s.kind == CLIENT]
    assert assignment.end_ns <= attempt.start_ns

    # Not sampled by the client: nothing recorded, but the trace context still went upstream.
    assert receiver.in_trace(unsampled) == []
    (sent,) = upstream.traceparents["/echo/unsampled"]
    version, trace_id, parent, flags = sent.split("-")
    assert (version, trace_id, flags) == ("00", unsampled, "00")
    assert parent != client_span and len(parent) == 16
    # No traceparent from the client: the gateway's own trace, passed upstream from its attempt.
    (sent,) = upstream.traceparents["/echo/fresh"]
    _, trace_id, parent, flags = sent.split("-")
    server = _server_span(spans, trace_id)
    assert server.parent_id == ""
    assert int(flags, 16) & 1  # sampled (the SDK may also set W3C level 2's "random" flag)
    (attempt,) = [s for s in _children(spans, server) if s.kind == CLIENT]
    assert attempt.span_id == parent


async def test_an_unreachable_collector_neither_fails_nor_holds_requests(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    async with _upstream() as upstream:
        gateway = await _start(_config(upstream.port, nowhere, tmp_path), tmp_path)
        try:
            async with aiohttp.ClientSession() as session:
                for i in range(200):
                    async with session.get(f"{gateway.url}/echo/{i}") as response:
                        assert response.status == 200
        finally:
            # It also shuts down cleanly, its last export given up after the export timeout.
            assert gateway.stop() == 0, gateway.log()
    assert len(upstream.traceparents) == 200


async def test_a_request_that_matches_no_route_has_its_server_span(tmp_path: Path) -> None:
    async with otlp_receiver() as receiver, _upstream() as upstream:
        config = _config(upstream.port, receiver.endpoint, tmp_path)
        config["routes"] = [{"name": "api", "match": {"prefix": "/echo/"}, "backend": {"cluster": "up"}}]
        gateway = await _start(config, tmp_path)
        traced, left_out, client_span = secrets.token_hex(16), secrets.token_hex(16), secrets.token_hex(8)
        try:
            async with aiohttp.ClientSession() as session:
                for trace_id, sampled in ((left_out, False), (traced, True)):
                    headers = {"traceparent": _traceparent(trace_id, client_span, sampled)}
                    async with session.get(f"{gateway.url}/nowhere", headers=headers) as response:
                        assert response.status == 404
                        request_id = response.headers["x-request-id"]
            spans = await receiver.wait_for(lambda spans: any(s.trace_id == traced for s in spans))
        finally:
            assert gateway.stop() == 0, gateway.log()
    server = _server_span(spans, traced)
    assert server.name == "GET" and server.parent_id == client_span
    assert server.attributes["http.response.status_code"] == 404
    assert server.attributes["url.path"] == "/nowhere"
    assert server.attributes["turnout.request_id"] == request_id
    assert "http.route" not in server.attributes
    assert not server.error  # a 4xx is no server error
    assert _children(spans, server) == []
    assert receiver.in_trace(left_out) == []
    assert upstream.traceparents == {}

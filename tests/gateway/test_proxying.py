"""What the data path does to requests and responses, checked against a real upstream process."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import gateway_config
from tests.support.processes import Process, free_port


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    async with session.get(url, **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, {k.lower(): v for k, v in response.headers.items()}, body


async def test_routes_match_in_order_and_unmatched_gets_json_404(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {"name": "b-only", "match": {"prefix": "/b/", "methods": ["POST"]}, "backend": {"cluster": "b"}},
            {
                "name": "by-header",
                "match": {"prefix": "/", "headers": {"x-pick": "b"}},
                "backend": {"cluster": "b"},
            },
            {"name": "model", "match": {"model": "risk", "version": "2"}, "backend": {"cluster": "b"}},
            {"name": "a", "match": {"prefix": "/a/"}, "backend": {"cluster": "up"}},
        ],
    )
    config["clusters"]["b"] = {"endpoints": [f"127.0.0.1:{upstream_b.port}"]}
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gw.data_port}"
        async with session.post(f"{base}/b/x") as r:
            assert (await r.json())["name"] == "b"
        assert (await _get(session, f"{base}/a/x"))[2]["name"] == "a"
        assert (await _get(session, f"{base}/a/x", headers={"x-pick": "b"}))[2]["name"] == "b"
        assert (await _get(session, f"{base}/v2/models/risk/versions/2/ready"))[2]["name"] == "b"
        status, headers, body = await _get(session, f"{base}/v2/models/risk/versions/1/ready")
        assert status == 404
        assert headers["content-type"] == "application/json"
        assert body["error"] == "no route matches this request"
        status, _, _ = await _get(session, f"{base}/b/x")  # GET does not match the POST-only route
        assert status == 404


async def test_forwarding_headers_and_header_rules(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {
                "name": "r",
                "match": {"prefix": "/old/"},
                "rewrite": {"prefix": "/new/"},
                "request_headers": {"add": {"x-added": "yes"}, "remove": ["x-secret"]},
                "response_headers": {"add": {"x-served-by": "turnout"}, "remove": ["server"]},
                "backend": {"cluster": "up"},
            }
        ],
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        status, headers, body = await _get(
            session,
            f"http://127.0.0.1:{gw.data_port}/old/thing?q=1",
            headers={
                "x-secret": "s",
                "x-forwarded-for": "10.0.0.1",
                "x-request-id": "req-123",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "Connection": "keep-alive, x-hop",
                "x-hop": "drop me",
                "keep-alive": "timeout=5",
            },
        )
        assert status == 200
        sent = body["headers"]
        assert body["path"] == "/new/thing" and body["query"] == "q=1"
        assert sent["x-added"] == "yes"
        assert "x-secret" not in sent
        assert sent["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
        assert sent["x-forwarded-proto"] == "http"
        assert sent["x-request-id"] == "req-123"
        trace = sent["traceparent"].split("-")
        assert trace[1] == "0af7651916cd43dd8448eb211c80319c" and trace[2] != "b7ad6b7169203331"
        assert trace[3] == "01"
        assert "x-hop" not in sent and "keep-alive" not in sent
        assert headers["x-served-by"] == "turnout"
        assert "server" not in headers
        assert headers["x-request-id"] == "req-123"

        _, headers, body = await _get(session, f"http://127.0.0.1:{gw.data_port}/old/x")
        generated = body["headers"]["x-request-id"]
        assert len(generated) == 32 and headers["x-request-id"] == generated
        assert "traceparent" not in body["headers"]  # no tracer: no trace is started


async def test_server_sent_events_are_relayed_unbuffered(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(f"http://127.0.0.1:{gw.data_port}/sse?events=3&ms=400") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            first = await response.content.readuntil(b"\n\n")
            first_at = time.monotonic() - started
            rest = await response.read()
            total = time.monotonic() - started
        assert first == b"data: event 0\n\n"
        assert rest == b"data: event 1\n\ndata: event 2\n\n"
        # The upstream needs 800 ms for all events; the first must arrive long before that.
        assert total >= 0.8
        assert first_at < total - 0.5


async def test_slow_client_backpressure_bounds_gateway_memory(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    async with make_gateway(config) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.data_port, limit=2**16)
        # 64 chunks of 512 KiB = 32 MiB that the client reads slowly.
        writer.write(b"GET /stream?chunks=64&size=524288 HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.5)  # let the upstream run ahead if nothing holds it back
        conn = next(iter(gw.listener.connections))
        buffered = conn.transport.get_write_buffer_size()
        # Without backpressure the gateway would hold most of the 32 MiB in its write buffer.
        assert buffered < 4 * 1024 * 1024
        received = 0
        while True:
            chunk = await asyncio.wait_for(reader.read(2**20), 5)
            if not chunk:
                break
            received += len(chunk)
            if b"0\r\n\r\n" in chunk[-7:]:
                break
        writer.close()
        assert received > 32 * 1024 * 1024  # the whole body (plus chunk framing) came through


async def test_large_bodies_pass_both_ways(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], listen={"max_body_bytes": "8MiB"})
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        payload = b"z" * (3 * 1024 * 1024)
        async with session.post(
            f"http://127.0.0.1:{gw.data_port}/echo", data=io.BytesIO(payload)
        ) as response:
            assert (await response.json())["body_length"] == len(payload)
        async with session.get(f"http://127.0.0.1:{gw.data_port}/big?size=5000000") as response:
            assert len(await response.read()) == 5_000_000


async def test_upstream_down_gives_503_json(make_gateway: Any) -> None:
    config = gateway_config([f"127.0.0.1:{free_port()}"], cluster={"retry": {"attempts": 0}})
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        status, headers, body = await _get(session, f"http://127.0.0.1:{gw.data_port}/x")
        assert status == 503
        assert "cannot connect" in body["error"]
        assert headers["content-type"] == "application/json"


async def test_retry_on_503_reaches_another_try(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        cluster={"retry": {"attempts": 2, "on": ["503"], "backoff_base": "1ms"}},
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        key = f"k{time.monotonic_ns()}"
        status, _, body = await _get(session, f"http://127.0.0.1:{gw.data_port}/fail-once/{key}")
        assert status == 200 and body["ok"] is True
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], cluster={"retry": {"attempts": 0}})
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        key = f"k{time.monotonic_ns()}"
        status, _, _ = await _get(session, f"http://127.0.0.1:{gw.data_port}/fail-once/{key}")
        assert status == 503  # the upstream's own 503, relayed


async def test_a_retry_goes_to_another_endpoint_than_the_one_that_failed(
    make_gateway: Any, upstream_a: Process
) -> None:
    # A random balancer picks the dead endpoint again for half the retries unless the retry steers
    # away from it; without ejection or health checks nothing else would.
    config = gateway_config(
        [f"127.0.0.1:{free_port()}", f"127.0.0.1:{upstream_a.port}"],
        cluster={
            "balancer": "random",
            "outlier": {"consecutive_failures": 0},
            "retry": {"attempts": 1, "on": ["connect_failure"], "backoff_base": "1ms"},
        },
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        answers = [await _get(session, f"http://127.0.0.1:{gw.data_port}/echo") for _ in range(40)]
    assert [status for status, _, _ in answers] == [200] * 40
    assert {body["name"] for _, _, body in answers} == {"a"}


async def test_upstream_timeout_gives_504(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"], cluster={"timeouts": {"request": "100ms"}, "retry": {"attempts": 0}}
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        status, _, body = await _get(session, f"http://127.0.0.1:{gw.data_port}/slow?ms=2000")
        assert status == 504
        assert body["code"] == "timeout"
        # After a quiet spell (the deadline sweeper sleeps), the next slow request still times out.
        await asyncio.sleep(0.1)
        status, _, body = await _get(session, f"http://127.0.0.1:{gw.data_port}/slow?ms=2000")
        assert (status, body["code"]) == (504, "timeout")


async def test_circuit_breaker_answers_overloaded(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"], cluster={"circuit_breaker": {"max_concurrent": 2}}
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}"
        slow = [asyncio.create_task(_get(session, f"{url}/slow?ms=500")) for _ in range(2)]
        await asyncio.sleep(0.15)
        status, headers, body = await _get(session, f"{url}/echo")
        assert status == 503
        assert headers["x-turnout-overloaded"] == "1"
        assert body["code"] == "overloaded"
        assert [r[0] for r in await asyncio.gather(*slow)] == [200, 200]


@pytest.mark.parametrize("balancer", ["round_robin", "weighted_round_robin", "least_request"])
async def test_balancers_spread_over_both_upstreams(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, balancer: str
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"], cluster={"balancer": balancer}
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        names = [(await _get(session, f"http://127.0.0.1:{gw.data_port}/echo"))[2]["name"] for _ in range(20)]
        assert set(names) == {"a", "b"}
        if balancer == "round_robin":
            assert names.count("a") == names.count("b") == 10


async def test_consistent_hash_keeps_a_user_on_one_upstream(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"],
        cluster={"balancer": {"type": "consistent_hash", "hash_on": "header:x-user"}},
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        seen: dict[str, set[str]] = {}
        for user in range(20):
            for _ in range(3):
                body = (
                    await _get(
                        session, f"http://127.0.0.1:{gw.data_port}/echo", headers={"x-user": f"user-{user}"}
                    )
                )[2]
                seen.setdefault(f"user-{user}", set()).add(body["name"])
        assert all(len(names) == 1 for names in seen.values())
        assert {next(iter(n)) for n in seen.values()} == {"a", "b"}


async def test_requests_waiting_for_a_connection_are_capped(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        cluster={"max_connections_per_endpoint": 1, "circuit_breaker": {"max_pending": 1}},
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}"
        # One request holds the only connection, one waits for it; a third may not wait.
        held = [asyncio.create_task(_get(session, f"{url}/slow?ms=400")) for _ in range(2)]
        await asyncio.sleep(0.15)
        status, headers, body = await _get(session, f"{url}/echo")
        assert status == 503 and headers["x-turnout-overloaded"] == "1"
        assert "waiting for a connection" in body["error"]
        assert [r[0] for r in await asyncio.gather(*held)] == [200, 200]

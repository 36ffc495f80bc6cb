"""The admin API as an operator uses it: real HTTP to an in-process gateway on loopback, real upstreams."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.conftest import gateway_config
from tests.support.processes import Process

# Deadline for conditions polled over HTTP (an in-flight count, a readiness flip): far above what a
# loaded 2-core machine needs, so a timeout means the condition never came.
POLL_TIMEOUT_S = 5.0
# Poll cadence: short enough to keep tests quick, long enough not to spin the event loop.
POLL_INTERVAL_S = 0.02


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    """One call; a call that changes state says Content-Type: application/json, as documented."""
    if method != "GET":
        kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
    async with session.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, {k.lower(): v for k, v in response.headers.items()}, body


async def _names(session: aiohttp.ClientSession, url: str, count: int) -> Counter[str]:
    """Which upstreams answered `count` sequential requests (each must succeed)."""
    names: Counter[str] = Counter()
    for _ in range(count):
        async with session.get(url) as response:
            assert response.status == 200, await response.text()
            names[(await response.json())["name"]] += 1
    return names


async def _wait_for(condition: Callable[[], Awaitable[bool]], message: str) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"timed out waiting for {message}")


async def _text(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """One GET on a fresh connection: the status, headers and the body as text."""
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, await response.text()


def _endpoint(clusters: dict[str, Any], address: str, cluster: str = "up") -> dict[str, Any]:
    return next(e for e in clusters[cluster]["endpoints"] if e["address"] == address)


async def test_healthz_and_readyz_report_ready_then_draining_during_shutdown(
    make_gateway: Any, upstream_a: Process
) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        status, headers, body = await _call(session, "GET", f"{admin}/healthz")
        assert (status, body) == (200, {"status": "ok"})
        assert headers["content-type"] == "application/json"
        status, _, body = await _call(session, "GET", f"{admin}/readyz")
        assert (status, body) == (200, {"status": "ready"})

        slow = asyncio.create_task(_call(session, "GET", f"http://127.0.0.1:{gw.data_port}/slow?ms=700"))

        async def one_in_flight() -> bool:
            clusters = (await _call(session, "GET", f"{admin}/admin/clusters"))[2]
            return bool(clusters["up"]["endpoints"][0]["inflight"] == 1)

        await _wait_for(one_in_flight, "the slow request to reach the upstream")
        shutdown = asyncio.create_task(gw.shutdown(drain_timeout=5.0))

        async def draining() -> bool:
            return (await _call(session, "GET", f"{admin}/readyz"))[0] == 503

        await _wait_for(draining, "/readyz to report the drain")
        assert not slow.done()  # the drain is still waiting for the request in flight
        status, _, body = await _call(session, "GET", f"{admin}/readyz")
        assert (status, body) == (503, {"status": "draining"})
        status, _, body = await _call(session, "GET", f"{admin}/healthz")
        assert (status, body) == (200, {"status": "ok"})  # alive while draining: no restart wanted
        status, _, body = await slow
        assert status == 200 and body["slow"] is True
        await shutdown


async def test_config_shows_the_effective_config_with_secrets_hidden(
    make_gateway: Any, upstream_a: Process
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        cluster={"balancer": "least_request"},
        routes=[
            {
                "name": "all",
                "match": {"prefix": "/"},
                "backend": {"cluster": "up"},
                "filters": [
                    {
                        "plugin": "tests.support.plugins:UPSTREAM_AUTH",
                        "config": {
                            "api_token": "tok-visible-if-leaked",
                            "client_secret": "secret-visible-if-leaked",
                            "nested": {"db_password": "password-visible-if-leaked"},
                            "audience": "fraud",
                        },
                    }
                ],
            }
        ],
    )
    config["admin"]["token"] = "admin-token-visible-if-leaked"
    token = {"Authorization": "Bearer admin-token-visible-if-leaked"}
    async with make_gateway(config) as gw:
        status, headers, text = await _text(f"http://127.0.0.1:{gw.admin_port}/admin/config", token)
    assert status == 200 and headers["content-type"] == "application/json"
    assert "visible-if-leaked" not in text
    effective = json.loads(text)
    assert effective["admin"]["token"] == "***"
    options = effective["routes"][0]["filters"][0]["config"]
    assert options == {
        "api_token": "***",
        "client_secret": "***",
        "nested": {"db_password": "***"},
        "audience": "fraud",
    }
    # The effective config: defaults filled in and values normalized, not the file as written.
    assert effective["listen"]["port"] == config["listen"]["port"]
    assert effective["clusters"]["up"]["balancer"]["type"] == "least_request"
    assert effective["clusters"]["up"]["endpoints"] == [
        {"address": f"127.0.0.1:{upstream_a.port}", "weight": 1, "grpc_port": None}
    ]
    assert effective["clusters"]["up"]["retry"]["attempts"] == 1
    access_log = effective["access_log"]
    assert (access_log["enabled"], access_log["path"], access_log["sample"]) == (False, "stdout", 1.0)
    assert access_log["fields"][:2] == ["ts", "request_id"]


async def test_config_hides_secret_values_that_are_not_strings(
    make_gateway: Any, upstream_a: Process
) -> None:
    # YAML reads `password: 12345678` as a number and a list of tokens as a list: still secrets.
    options = {"db_password": 12345678, "upstream_tokens": ["tok-a-visible", "tok-b-visible"]}
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {
                "name": "all",
                "match": {"prefix": "/"},
                "backend": {"cluster": "up"},
                "filters": [{"plugin": "tests.support.plugins:UPSTREAM_AUTH", "config": options}],
            }
        ],
    )
    async with make_gateway(config) as gw:
        status, _, text = await _text(f"http://127.0.0.1:{gw.admin_port}/admin/config")
    assert status == 200
    assert "12345678" not in text and "visible" not in text
    assert json.loads(text)["routes"][0]["filters"][0]["config"] == {
        "db_password": "***",
        "upstream_tokens": "***",
    }


async def test_clusters_show_endpoint_health_ejections_inflight_and_latency(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    a, b = f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"
    config = gateway_config(
        [a, b],
        cluster={
            "retry": {"attempts": 0},
            # Two 503s in a row eject; the ejection outlasts the test so it can be seen.
            "outlier": {"consecutive_failures": 2, "base_ejection_time": "60s"},
        },
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}/admin/clusters"
        data = f"http://127.0.0.1:{gw.data_port}"
        assert await _names(session, f"{data}/echo", 4) == Counter({"a": 2, "b": 2})
        status, headers, clusters = await _call(session, "GET", admin)
        assert status == 200 and headers["content-type"] == "application/json"
        assert list(clusters) == ["up"]
        assert clusters["up"]["protocol"] == "http"
        assert clusters["up"]["circuit_breaker_rejections"] == 0
        for address in (a, b):
            endpoint = _endpoint(clusters, address)
            assert endpoint["healthy"] is True and endpoint["available"] is True
            assert endpoint["ejected"] is False and endpoint["ejection_count"] == 0
            assert endpoint["drained"] is False
            assert endpoint["inflight"] == 0
            assert endpoint["total_requests"] == 2 and endpoint["total_failures"] == 0
            assert 0 < endpoint["ewma_ms"] < 1000

        slow = asyncio.create_task(_call(session, "GET", f"{data}/slow?ms=400"))

        async def one_in_flight() -> bool:
            endpoints = (await _call(session, "GET", admin))[2]["up"]["endpoints"]
            return sorted(e["inflight"] for e in endpoints) == [0, 1]

        await _wait_for(one_in_flight, "one request in flight")
        assert (await slow)[0] == 200
        endpoints = (await _call(session, "GET", admin))[2]["up"]["endpoints"]
        assert [e["inflight"] for e in endpoints] == [0, 0]
        assert max(e["ewma_ms"] for e in endpoints) >= 400  # peak EWMA takes a slower answer at once

        for _ in range(4):  # two 503s for each endpoint, alternately
            async with session.get(f"{data}/status/503") as response:
                assert response.status == 503
        endpoints = (await _call(session, "GET", admin))[2]["up"]["endpoints"]
        ejected = [e for e in endpoints if e["ejected"]]
        # Only one of two may be ejected (max_ejection_percent 50): the other keeps serving.
        assert len(ejected) == 1
        assert ejected[0]["ejection_count"] == 1
        assert ejected[0]["available"] is False and ejected[0]["healthy"] is True
        assert 50 < ejected[0]["ejected_seconds_left"] <= 60
        assert sum(e["total_failures"] for e in endpoints) == 4
        survivor = next(e for e in endpoints if not e["ejected"])
        assert await _names(session, f"{data}/echo", 3) == Counter(
            {"a" if survivor["address"] == a else "b": 3}
        )


async def test_drained_endpoint_gets_no_new_requests_until_undrained(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    a, b = f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"
    async with make_gateway(gateway_config([a, b])) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}/admin/clusters"
        echo = f"http://127.0.0.1:{gw.data_port}/echo"
        status, _, body = await _call(session, "POST", f"{admin}/up/endpoints/{a}/drain")
        assert (status, body) == (200, {"cluster": "up", "endpoint": a, "drained": True})
        clusters = (await _call(session, "GET", admin))[2]
        assert _endpoint(clusters, a)["drained"] is True and _endpoint(clusters, a)["available"] is False
        assert await _names(session, echo, 6) == Counter({"b": 6})

        status, _, body = await _call(session, "POST", f"{admin}/up/endpoints/{a}/undrain")
        assert (status, body) == (200, {"cluster": "up", "endpoint": a, "drained": False})
        assert _endpoint((await _call(session, "GET", admin))[2], a)["drained"] is False
        assert await _names(session, echo, 6) == Counter({"a": 3, "b": 3})


async def test_registered_endpoint_takes_traffic_and_removing_it_spares_requests_in_flight(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    a, b = f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"
    async with make_gateway(gateway_config([a])) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}/admin/clusters"
        data = f"http://127.0.0.1:{gw.data_port}"
        assert await _names(session, f"{data}/echo", 2) == Counter({"a": 2})
        status, _, body = await _call(session, "POST", f"{admin}/up/endpoints", json={"address": b})
        assert (status, body) == (201, {"cluster": "up", "endpoint": b, "registered": True})
        assert [e["address"] for e in (await _call(session, "GET", admin))[2]["up"]["endpoints"]] == [a, b]
        assert await _names(session, f"{data}/echo", 6) == Counter({"a": 3, "b": 3})

        slow = [asyncio.create_task(_call(session, "GET", f"{data}/slow?ms=600")) for _ in range(4)]

        async def b_busy() -> bool:
            return bool(_endpoint((await _call(session, "GET", admin))[2], b)["inflight"] >= 1)

        await _wait_for(b_busy, "a slow request in flight to the registered endpoint")
        status, _, body = await _call(session, "DELETE", f"{admin}/up/endpoints/{b}")
        assert (status, body) == (200, {"cluster": "up", "endpoint": b, "registered": False})
        assert [e["address"] for e in (await _call(session, "GET", admin))[2]["up"]["endpoints"]] == [a]
        assert await _names(session, f"{data}/echo", 4) == Counter({"a": 4})
        answers = await asyncio.gather(*slow)
        assert [status for status, _, _ in answers] == [200] * 4
        assert "b" in {body["name"] for _, _, body in answers}  # the removed endpoint finished its work

        status, _, body = await _call(session, "DELETE", f"{admin}/up/endpoints/{b}")
        assert status == 404 and body == {"error": f"cluster 'up' has no endpoint {b}"}


async def test_unknown_cluster_or_endpoint_gets_json_404(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    config["clusters"]["fraud"] = {"endpoints": [f"127.0.0.1:{upstream_b.port}"]}
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}/admin/clusters"
        unknown = {"error": "unknown cluster 'nope' (known: fraud, up)"}
        for method, path, kwargs in (
            ("POST", "/nope/endpoints", {"json": {"address": "127.0.0.1:9"}}),
            ("DELETE", "/nope/endpoints/127.0.0.1:9", {}),
            ("POST", "/nope/endpoints/127.0.0.1:9/drain", {}),
        ):
            status, headers, body = await _call(session, method, admin + path, **kwargs)
            assert (status, body) == (404, unknown), (method, path)
            assert headers["content-type"] == "application/json"
        status, _, body = await _call(session, "POST", f"{admin}/up/endpoints/127.0.0.1:9/drain")
        assert (status, body) == (404, {"error": "cluster 'up' has no endpoint 127.0.0.1:9"})
        # A name that cannot go in a status line still gets its JSON 404 (it once got a 500).
        status, _, body = await _call(session, "DELETE", f"{admin}/up%0D%0AX-Injected:%201/endpoints/a:1")
        assert (status, body) == (404, {"error": "unknown cluster 'up\r\nX-Injected: 1' (known: fraud, up)"})


async def test_malformed_registration_gets_json_400_and_changes_nothing(
    make_gateway: Any, upstream_a: Process
) -> None:
    a = f"127.0.0.1:{upstream_a.port}"
    async with make_gateway(gateway_config([a])) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.admin_port}/admin/clusters/up/endpoints"
        for payload, field, message in (
            (b"{not json", "body", "the body is not JSON"),
            (b"[1, 2]", "body", "the body must be a JSON object"),
            (b'{"weight": 2}', "address", "address is required"),
            (b'{"address": 9}', "address", "address must be a non-empty string"),
            (b'{"address": "127.0.0.1:9", "weight": "x"}', "weight", "weight must be a whole number"),
            (b'{"address": "127.0.0.1:9", "weight": 0}', "weight", "weight must be a whole number"),
            (b'{"address": "127.0.0.1:9", "weight": 1.5}', "weight", "weight must be a whole number"),
            (b'{"address": "no-port-here"}', "address", "use host:port"),
            (b'{"address": "127.0.0.1:70000"}', "address", "from 1 to 65535"),
            (b'{"address": "bad_host!:80"}', "address", "neither an IP address nor a DNS name"),
        ):
            status, headers, body = await _call(session, "POST", url, data=payload)
            assert status == 400 and body["field"] == field, (payload, body)
            assert message in body["error"], (payload, body)
            assert headers["content-type"] == "application/json"
        clusters = (await _call(session, "GET", f"http://127.0.0.1:{gw.admin_port}/admin/clusters"))[2]
        assert [e["address"] for e in clusters["up"]["endpoints"]] == [a]


async def test_token_guards_admin_and_metrics_but_not_health(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    config["admin"]["token"] = "correct-horse"
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        guarded = (
            ("GET", "/admin/config"),
            ("GET", "/admin/clusters"),
            ("GET", "/metrics"),
            ("POST", "/admin/reload"),
            ("POST", f"/admin/clusters/up/endpoints/127.0.0.1:{upstream_a.port}/drain"),
        )
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "correct-horse"}):
            for method, path in guarded:
                status, answer_headers, body = await _call(session, method, admin + path, headers=headers)
                assert status == 401, (method, path, headers)
                assert answer_headers["www-authenticate"] == 'Bearer realm="turnout-admin"'
                assert body == {"error": "admin token required"}
        good = {"Authorization": "Bearer correct-horse"}
        status, _, clusters = await _call(session, "GET", f"{admin}/admin/clusters", headers=good)
        assert status == 200
        assert _endpoint(clusters, f"127.0.0.1:{upstream_a.port}")["drained"] is False  # refused: no effect
        status, _, body = await _call(session, "GET", f"{admin}/admin/config", headers=good)
        assert status == 200 and body["admin"]["token"] == "***"
        async with session.get(f"{admin}/metrics", headers=good) as response:
            assert response.status == 200
            assert "turnout_endpoint_healthy" in await response.text()
        for path, expected in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
            assert (await _call(session, "GET", admin + path))[::2] == (200, expected)


async def test_token_check_refuses_a_header_that_is_not_utf8(make_gateway: Any, upstream_a: Process) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    config["admin"]["token"] = "correct-horse"
    async with make_gateway(config) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.admin_port)
        writer.write(
            b"GET /admin/config HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\r\n"
            b"Connection: close\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), POLL_TIMEOUT_S)
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]

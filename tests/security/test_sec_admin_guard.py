"""A web page in the operator's browser cannot drive the admin API; the documented calls still work.

Each refused call is sent as a browser would send it (a simple POST with text/plain or no body, a
foreign Origin, a rebinding Host) to a real gateway's admin port, and the test then checks that it
changed nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import gateway_config
from tests.support.processes import Process

JSON = {"Content-Type": "application/json"}


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    async with session.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, {k.lower(): v for k, v in response.headers.items()}, body


async def _endpoints(session: aiohttp.ClientSession, admin: str) -> dict[str, bool]:
    """Each endpoint of cluster `up` and whether it is drained."""
    clusters = (await _call(session, "GET", f"{admin}/admin/clusters"))[2]
    return {e["address"]: e["drained"] for e in clusters["up"]["endpoints"]}


async def test_changes_without_a_json_content_type_are_refused_and_change_nothing(
    make_gateway: Any, upstream_a: Process, upstream_b: Process
) -> None:
    a, b = f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"
    async with make_gateway(gateway_config([a])) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        before = await _endpoints(session, admin)
        add = f"{admin}/admin/clusters/up/endpoints"
        for method, url, kwargs in (
            # What a page's fetch(..., {mode: "no-cors"}) or a form can send without a preflight.
            ("POST", add, {"data": f'{{"address": "{b}"}}', "headers": {"Content-Type": "text/plain"}}),
            (
                "POST",
                add,
                {"data": f"address={b}", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            ),
            ("POST", add, {"data": f'{{"address": "{b}"}}'.encode()}),  # application/octet-stream
            ("POST", f"{admin}/admin/clusters/up/endpoints/{a}/drain", {}),  # no body, no type
            (
                "POST",
                f"{admin}/admin/clusters/up/endpoints/{a}/drain",
                {"headers": {"Content-Type": "text/plain"}},
            ),
            ("DELETE", f"{add}/{a}", {}),
            ("POST", f"{admin}/admin/reload", {"headers": {"Content-Type": "text/plain"}}),
            ("POST", f"{admin}/admin/cache/invalidate", {}),
        ):
            status, headers, body = await _call(session, method, url, **kwargs)
            assert status == 415, (method, url, kwargs, body)
            assert headers["content-type"] == "application/json"
            assert body == {"error": "calls that change state need Content-Type: application/json"}
        assert await _endpoints(session, admin) == before == {a: False}


async def test_a_foreign_origin_is_refused_and_the_listeners_own_origin_accepted(
    make_gateway: Any, upstream_a: Process
) -> None:
    a = f"127.0.0.1:{upstream_a.port}"
    async with make_gateway(gateway_config([a])) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        drain = f"{admin}/admin/clusters/up/endpoints/{a}/drain"
        for origin in (
            "http://evil",
            "null",  # a sandboxed frame or a file: page
            f"http://evil.example:{gw.admin_port}",
            f"http://127.0.0.1:{gw.admin_port + 1}",  # another local service's page
            f"https://127.0.0.1:{gw.admin_port}",
            f"http://localhost.evil:{gw.admin_port}",
        ):
            status, _, body = await _call(session, "POST", drain, json={}, headers={"Origin": origin})
            assert status == 403, (origin, body)
            assert "origin" in body["error"]
        assert await _endpoints(session, admin) == {a: False}
        # Reads are not guarded: a page cannot read the answer anyway (no CORS grant).
        status, headers, _ = await _call(
            session, "GET", f"{admin}/admin/clusters", headers={"Origin": "http://evil"}
        )
        assert status == 200 and "access-control-allow-origin" not in headers
        for own in (f"http://127.0.0.1:{gw.admin_port}", f"http://localhost:{gw.admin_port}"):
            status, _, body = await _call(session, "POST", drain, json={}, headers={"Origin": own})
            assert (status, body) == (200, {"cluster": "up", "endpoint": a, "drained": True}), own


async def test_a_rebinding_host_is_refused_and_loopback_hosts_accepted(
    make_gateway: Any, upstream_a: Process
) -> None:
    a = f"127.0.0.1:{upstream_a.port}"
    async with make_gateway(gateway_config([a])) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        add = f"{admin}/admin/clusters/up/endpoints"
        for host in (
            "rebind.evil",
            f"rebind.evil:{gw.admin_port}",
            "127.0.0.1.evil",
            "evil@127.0.0.1",
            "[::2]:80",
        ):
            status, _, body = await _call(
                session, "POST", add, json={"address": "127.0.0.1:9"}, headers={"Host": host}
            )
            assert status == 403, (host, body)
            assert "Host" in body["error"]
            status, _, _ = await _call(
                session, "POST", f"{admin}/admin/reload", json={}, headers={"Host": host}
            )
            assert status == 403
        assert await _endpoints(session, admin) == {a: False}
        for port, host in enumerate(("localhost", "127.0.0.2:1", "[::1]", f"LOCALHOST:{gw.admin_port}"), 9):
            status, _, body = await _call(
                session, "POST", add, json={"address": f"127.0.0.1:{port}"}, headers={"Host": host}
            )
            assert status == 201, (host, body)


async def test_reads_on_a_loopback_listener_need_a_loopback_host_without_a_token(
    make_gateway: Any, upstream_a: Process
) -> None:
    # A rebinding page could otherwise read the redacted config and the metrics of every cluster.
    a = f"127.0.0.1:{upstream_a.port}"
    async with make_gateway(gateway_config([a])) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        for path in ("/admin/config", "/admin/clusters", "/metrics"):
            status, _, body = await _call(session, "GET", f"{admin}{path}", headers={"Host": "rebind.evil"})
            assert status == 403, (path, body)
            assert "Host" in body["error"]
            async with session.get(
                f"{admin}{path}", headers={"Host": f"localhost:{gw.admin_port}"}
            ) as response:
                assert response.status == 200, path
        assert await _endpoints(session, admin) == {a: False}


async def test_with_a_token_the_token_guards_and_origin_and_host_are_not_needed(
    make_gateway: Any, upstream_a: Process
) -> None:
    a = f"127.0.0.1:{upstream_a.port}"
    config = gateway_config([a])
    config["admin"]["token"] = "correct-horse"
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        drain = f"{admin}/admin/clusters/up/endpoints/{a}/drain"
        page = {"Origin": "http://evil", "Host": "rebind.evil"}
        status, _, _ = await _call(session, "POST", drain, json={}, headers=page)
        assert status == 401  # what a page gets: it cannot know or attach the token
        token = {"Authorization": "Bearer correct-horse"}
        status, _, _ = await _call(
            session, "POST", drain, data="{}", headers={**token, "Content-Type": "text/plain"}
        )
        assert status == 415
        # A token holder behind a proxy that rewrites Host or adds Origin is let through.
        status, _, body = await _call(session, "POST", drain, json={}, headers={**token, **page})
        assert (status, body) == (200, {"cluster": "up", "endpoint": a, "drained": True})


async def test_the_documented_calls_work_from_a_loopback_client_with_a_json_content_type(
    make_gateway: Any, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    a, b = f"127.0.0.1:{upstream_a.port}", f"127.0.0.1:{upstream_b.port}"
    config = gateway_config(
        [a], routes=[{"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}]
    )
    config["clusters"]["b"] = {"endpoints": [b]}
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": ["header:x-user-id"],
            "arms": {"control": {"cluster": "up", "weight": 50}, "treatment": {"cluster": "b", "weight": 50}},
        }
    }
    async with make_gateway(config) as gw, aiohttp.ClientSession(headers=JSON) as session:
        admin = f"http://127.0.0.1:{gw.admin_port}/admin"
        endpoints = f"{admin}/clusters/up/endpoints"
        experiment = f"{admin}/experiments/exp"
        # As in the docs: `curl -XPOST -H 'Content-Type: application/json' ...`, with or without a body.
        for method, url, data, expected_status, expected in (
            ("POST", f"{endpoints}/{a}/drain", None, 200, {"drained": True}),
            ("POST", f"{endpoints}/{a}/undrain", b"{}", 200, {"drained": False}),
            ("POST", endpoints, f'{{"address": "{b}", "weight": 2}}'.encode(), 201, {"registered": True}),
            ("DELETE", f"{endpoints}/{b}", None, 200, {"registered": False}),
            ("POST", f"{admin}/reload", None, 200, {"reloaded": True}),
            ("POST", f"{experiment}/pause", None, 200, {}),
            ("POST", f"{experiment}/resume", b"{}", 200, {}),
            ("POST", f"{experiment}/weights", b'{"weights": {"control": 90, "treatment": 10}}', 200, {}),
            ("POST", f"{experiment}/coverage", b'{"percent": 20}', 200, {}),
            ("POST", f"{experiment}/promote", b'{"arm": "treatment"}', 200, {}),
        ):
            status, _, body = await _call(session, method, url, data=data)
            assert status == expected_status, (method, url, body)
            assert expected.items() <= body.items(), (method, url, body)
        status, _, body = await _call(session, "GET", experiment)
        assert (
            status == 200 and body["state"]["status"] == "promoted" and body["state"]["winner"] == "treatment"
        )
        assert body["state"]["coverage"] == 20.0

"""The response cache and callers' credentials (RFC 9111 3.5), against a real gateway and upstream:
no answer to one caller reaches another unless the answer or the config says it may."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import ConfigError
from gateway.loading import load_gateway_config_text
from tests.conftest import gateway_config

# Callers of the keyed routes: alice and bob share tenant acme, carol is of globex.
KEYS = {"alice": ("alice-key", "acme"), "bob": ("bob-key", "acme"), "carol": ("carol-key", "globex")}
BODY = b'{"inputs": [1, 2, 3]}'


class Upstream:
    """A model server that names the credentials it saw and counts calls. Query parameters choose
    response headers: `cc` a Cache-Control value, `cookie` a Set-Cookie."""

    def __init__(self) -> None:
        self.calls = 0
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        headers = {}
        if "cc" in request.query:
            headers["Cache-Control"] = request.query["cc"]
        if "cookie" in request.query:
            headers["Set-Cookie"] = f"session={request.query['cookie']}"
        answer = {
            "call": self.calls,
            "authorization": request.headers.get("authorization"),
            "cookie": request.headers.get("cookie"),
        }
        return web.json_response(answer, headers=headers)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Upstream]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        try:
            yield self
        finally:
            await runner.cleanup()


def _keyed_route(name: str, cache: dict[str, Any]) -> dict[str, Any]:
    keys = [
        {"sha256": hashlib.sha256(key.encode()).hexdigest(), "principal": principal, "tenant": tenant}
        for principal, (key, tenant) in KEYS.items()
    ]
    return {
        "name": name,
        "match": {"prefix": f"/{name}/"},
        "backend": {"cluster": "up"},
        "filters": [{"auth_apikey": {"keys": keys}}, {"cache": cache}],
    }


def _config(upstream: Upstream) -> dict[str, Any]:
    return gateway_config(
        [f"127.0.0.1:{upstream.port}"],
        routes=[
            _keyed_route("keyed", {}),
            _keyed_route("per-principal", {"vary_on": ["principal"]}),
            _keyed_route("per-tenant", {"vary_on": ["tenant"]}),
            _keyed_route("per-both", {"vary_on": ["tenant", "principal"]}),
            {
                "name": "open",
                "match": {"prefix": "/"},
                "backend": {"cluster": "up"},
                "filters": [{"cache": {}}],
            },
        ],
    )


Post = Callable[..., Any]


@pytest.fixture
async def post(make_gateway: Any) -> AsyncIterator[Post]:
    """`await post(path, caller=None, headers=None)` -> (x-turnout-cache, answer), via a real gateway."""
    upstream = Upstream()
    async with upstream.running(), make_gateway(_config(upstream)) as gateway:
        url = f"http://127.0.0.1:{gateway.data_port}"
        async with aiohttp.ClientSession() as session:

            async def send(
                path: str, caller: str | None = None, headers: dict[str, str] | None = None
            ) -> tuple[str, dict[str, Any]]:
                sent = dict(headers or {})
                if caller is not None:
                    sent["x-api-key"] = KEYS[caller][0]
                async with session.post(url + path, data=BODY, headers=sent) as response:
                    assert response.status == 200, await response.text()
                    return response.headers["x-turnout-cache"], await response.json()

            yield send


async def test_an_answer_to_an_authorization_is_neither_stored_nor_served(post: Post) -> None:
    outcome, alice = await post("/open/a", headers={"Authorization": "Bearer alice"})
    assert (outcome, alice["authorization"]) == ("miss", "Bearer alice")
    for headers in ({}, {"Authorization": "Bearer bob"}, {"Authorization": "Bearer alice"}):
        outcome, answer = await post("/open/a", headers=headers)
        assert outcome == "miss"
        assert answer["call"] > alice["call"]  # went upstream: nothing of alice's was kept
    # An anonymous answer is stored, but a caller with credentials is not served it.
    assert (await post("/open/a"))[0] == "hit"
    outcome, bob = await post("/open/a", headers={"Authorization": "Bearer bob"})
    assert (outcome, bob["authorization"]) == ("miss", "Bearer bob")


async def test_an_answer_to_a_cookie_is_neither_stored_nor_served(post: Post) -> None:
    await post("/open/c", headers={"Cookie": "session=alice"})
    outcome, anonymous = await post("/open/c")
    assert outcome == "miss" and anonymous["cookie"] is None
    outcome, bob = await post("/open/c", headers={"Cookie": "session=bob"})
    assert (outcome, bob["cookie"]) == ("miss", "session=bob")


async def test_the_experiments_unit_cookie_alone_keeps_a_request_cacheable(post: Post) -> None:
    # The unit cookie picks an experiment arm, and the arm is part of the key: it names no caller.
    _, first = await post("/open/u", headers={"Cookie": "turnout_uid=u-1"})
    outcome, second = await post("/open/u", headers={"Cookie": "turnout_uid=u-2"})
    assert (outcome, second) == ("hit", first)
    # Any other cookie beside it makes the request private again.
    outcome, mixed = await post("/open/u", headers={"Cookie": "turnout_uid=u-1; session=alice"})
    assert outcome == "miss" and mixed["call"] > first["call"]


async def test_principals_never_share_answers_without_vary_on(post: Post) -> None:
    _, alice = await post("/keyed/x", "alice")
    for caller in ("bob", "carol", "alice"):  # the same tenant, another tenant, alice herself
        outcome, answer = await post("/keyed/x", caller)
        assert outcome == "miss" and answer["call"] > alice["call"]


async def test_an_answer_that_allows_shared_caching_is_shared(post: Post) -> None:
    for directive in ("public, max-age=60", "s-maxage=60", "must-revalidate"):
        path = f"/open/shared?cc={directive}"
        first = await post(path, headers={"Authorization": "Bearer alice"})
        assert first[0] == "miss"
        for headers in ({"Authorization": "Bearer bob"}, {}):
            outcome, answer = await post(path, headers=headers)
            assert (outcome, answer) == ("hit", first[1]), directive
        assert (await post(f"/keyed/shared?cc={directive}", "alice"))[0] == "miss"
        assert (await post(f"/keyed/shared?cc={directive}", "bob"))[0] == "hit"


@pytest.mark.parametrize("query", ["cc=private", "cc=no-store", "cc=private,%20max-age=60", "cookie=s1"])
async def test_private_no_store_and_set_cookie_answers_are_never_stored(post: Post, query: str) -> None:
    _, first = await post(f"/open/never?{query}")
    outcome, second = await post(f"/open/never?{query}")
    assert outcome == "miss" and second["call"] == first["call"] + 1
    # Not with vary_on either: such an answer is for that caller and that moment only.
    await post(f"/per-principal/never?{query}", "alice")
    assert (await post(f"/per-principal/never?{query}", "alice"))[0] == "miss"


async def test_vary_on_principal_caches_per_caller(post: Post) -> None:
    _, alice = await post("/per-principal/p", "alice")
    _, bob = await post("/per-principal/p", "bob")
    assert alice["call"] != bob["call"]
    assert await post("/per-principal/p", "alice") == ("hit", alice)
    assert await post("/per-principal/p", "bob") == ("hit", bob)
    # A request without a principal on that route is refused by auth_apikey before the cache.


async def test_vary_on_tenant_shares_within_a_tenant_only(post: Post) -> None:
    _, alice = await post("/per-tenant/t", "alice")
    assert await post("/per-tenant/t", "bob") == ("hit", alice)  # bob is of acme too
    outcome, carol = await post("/per-tenant/t", "carol")
    assert outcome == "miss" and carol["call"] != alice["call"]
    assert await post("/per-tenant/t", "carol") == ("hit", carol)


async def test_vary_on_tenant_and_principal_keeps_each_principal_apart(post: Post) -> None:
    _, alice = await post("/per-both/b", "alice")
    outcome, bob = await post("/per-both/b", "bob")
    assert outcome == "miss" and bob["call"] != alice["call"]
    assert await post("/per-both/b", "alice") == ("hit", alice)


@pytest.mark.parametrize(
    ("vary_on", "problem"),
    [
        ("[principal, principal]", "lists a part twice"),
        ("[user]", "principal"),
        ("principal", "expected a list"),
    ],
)
def test_vary_on_is_checked_with_its_location(tmp_path: Path, vary_on: str, problem: str) -> None:
    text = (
        "clusters:\n  up: {endpoints: [127.0.0.1:9101]}\nroutes:\n"
        "  - backend: {cluster: up}\n"
        "    filters:\n"
        f"      - cache: {{vary_on: {vary_on}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_gateway_config_text(text, "x.yaml", tmp_path, env={})
    [error] = caught.value.errors
    assert error.startswith("x.yaml:6: routes[0].filters[0].cache.vary_on")
    assert problem in error

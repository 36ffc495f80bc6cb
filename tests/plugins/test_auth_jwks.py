"""auth_jwt against a real JWKS server on loopback: rotation, rate-limited refresh, outages."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from prometheus_client import CollectorRegistry

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.auth_jwt import FACTORY

ISSUER = "https://id.example"
AUDIENCE = "fraud"
POLL = 0.01  # seconds between checks while waiting for a condition
DEADLINE = 5.0  # seconds before a wait for a condition fails the test


class JwksServer:
    """Serves `self.keys` as a JWKS document and counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.status = 200
        self.url = ""

    def publish(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.keys = [{**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid} for kid, key in keys]

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.status != 200:
            return web.Response(status=self.status, text="down")
        return web.json_response({"keys": self.keys})


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in ("a", "b", "c")}


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    jwks = JwksServer()
    app = web.Application()
    app.router.add_get("/jwks.json", jwks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    jwks.url = f"http://{host}:{port}/jwks.json"
    try:
        yield jwks
    finally:
        await runner.cleanup()


@pytest.fixture
async def make_filter() -> AsyncIterator[Callable[..., Awaitable[tuple[Filter, CollectorRegistry]]]]:
    started: list[Filter] = []

    async def make(url: str, **options: Any) -> tuple[Filter, CollectorRegistry]:
        provider = {"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks_url": url, **options}
        registry = CollectorRegistry()
        model = FACTORY.config_model.model_validate({"providers": [provider]})
        filter_ = FACTORY(model, BuildContext("r1", "c1", registry))
        await filter_.start()
        started.append(filter_)
        return filter_, registry

    yield make
    for filter_ in started:
        await filter_.stop()


def token(key: rsa.RSAPrivateKey, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def answer(filter_: Filter, bearer: str) -> Response | None:
    ctx = RequestContext(
        "POST", "/", "", {"authorization": f"Bearer {bearer}"}, "127.0.0.1", time.monotonic()
    )
    result = filter_.on_request(ctx)
    if result is None or isinstance(result, Response):  # a token verified before: decided plain
        return result
    decision = await result
    assert decision is None or isinstance(decision, Response)
    return decision


def reason(decision: Response | None) -> str:
    assert decision is not None and decision.body is not None
    return decision.body.decode()


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(POLL)


async def test_rotation_via_unknown_kid_refresh_honours_the_rate_limit(
    server: JwksServer, keys: dict[str, rsa.RSAPrivateKey], make_filter: Any
) -> None:
    min_interval = 0.5  # long enough that the first refusal surely falls inside it, even on a busy machine
    server.publish(("a", keys["a"]))
    filter_, registry = await make_filter(
        server.url, jwks_min_refresh_interval=f"{min_interval}s", jwks_refresh_interval="1h"
    )
    assert server.fetches == 1  # fetched once at start
    assert await answer(filter_, token(keys["a"], "a")) is None

    # The provider rotates: b is published beside a. Right after the start-up fetch, the unknown kid
    # may not trigger a fetch (rate limit), so b is refused and nothing is fetched.
    server.publish(("a", keys["a"]), ("b", keys["b"]))
    started = time.monotonic()
    assert "signing key (kid) is unknown" in reason(await answer(filter_, token(keys["b"], "b")))
    assert server.fetches == 1

    # Once the interval has passed, the unknown kid triggers one fetch and b is accepted; a is still good.
    await asyncio.sleep(max(0.0, started + min_interval - time.monotonic()) + 0.05)
    assert await answer(filter_, token(keys["b"], "b")) is None
    assert server.fetches == 2
    assert await answer(filter_, token(keys["a"], "a")) is None

    # Another unknown kid right after: refused without a fetch.
    assert "signing key (kid) is unknown" in reason(await answer(filter_, token(keys["c"], "c")))
    assert server.fetches == 2
    labels = {"route": "r1", "provider": "idp", "result": "ok"}
    assert registry.get_sample_value("turnout_jwks_fetches_total", labels) == 2


async def test_background_refresh_retires_keys_dropped_from_the_set(
    server: JwksServer, keys: dict[str, rsa.RSAPrivateKey], make_filter: Any
) -> None:
    server.publish(("a", keys["a"]), ("b", keys["b"]))
    filter_, _ = await make_filter(
        server.url, jwks_min_refresh_interval="50ms", jwks_refresh_interval="100ms"
    )
    assert await answer(filter_, token(keys["a"], "a")) is None
    server.publish(("b", keys["b"]))
    fetches = server.fetches

    async def a_is_retired() -> bool:
        return server.fetches > fetches and await answer(filter_, token(keys["a"], "a")) is not None

    await wait_until(a_is_retired)
    assert await answer(filter_, token(keys["b"], "b")) is None


async def test_a_token_already_verified_is_refused_once_its_key_leaves_the_set(
    server: JwksServer, keys: dict[str, rsa.RSAPrivateKey], make_filter: Any
) -> None:
    server.publish(("a", keys["a"]), ("b", keys["b"]))
    filter_, _ = await make_filter(
        server.url, jwks_min_refresh_interval="50ms", jwks_refresh_interval="100ms"
    )
    signed_by_a = token(keys["a"], "a")  # one token, sent again and again: remembered once verified
    assert await answer(filter_, signed_by_a) is None
    assert await answer(filter_, signed_by_a) is None
    server.publish(("b", keys["b"]))
    fetches = server.fetches

    async def refused() -> bool:
        return server.fetches > fetches and await answer(filter_, signed_by_a) is not None

    # Within a refresh or two, far sooner than the 30 s a verification is otherwise remembered.
    await wait_until(refused)
    assert "signing key (kid) is unknown" in reason(await answer(filter_, signed_by_a))
    signed_by_b = token(keys["b"], "b")
    assert await answer(filter_, signed_by_b) is None
    assert await answer(filter_, signed_by_b) is None  # remembered again, its key still current


async def test_a_failing_fetch_keeps_the_previous_keys(
    server: JwksServer, keys: dict[str, rsa.RSAPrivateKey], make_filter: Any
) -> None:
    server.publish(("a", keys["a"]))
    filter_, registry = await make_filter(
        server.url, jwks_min_refresh_interval="50ms", jwks_refresh_interval="50ms"
    )
    server.status = 500

    async def failed_twice() -> bool:
        labels = {"route": "r1", "provider": "idp", "result": "error"}
        return (registry.get_sample_value("turnout_jwks_fetches_total", labels) or 0) >= 2

    await wait_until(failed_twice)
    assert await answer(filter_, token(keys["a"], "a")) is None
    server.keys = []  # an empty set is not a rotation: the previous keys stay
    server.status = 200
    fetches = server.fetches

    async def fetched_again() -> bool:
        return server.fetches > fetches + 1

    await wait_until(fetched_again)
    assert await answer(filter_, token(keys["a"], "a")) is None


async def test_concurrent_unknown_kids_share_one_fetch(
    server: JwksServer, keys: dict[str, rsa.RSAPrivateKey], make_filter: Any
) -> None:
    server.publish(("a", keys["a"]))
    filter_, _ = await make_filter(server.url, jwks_min_refresh_interval="50ms", jwks_refresh_interval="1h")
    server.publish(("a", keys["a"]), ("b", keys["b"]))
    await asyncio.sleep(0.06)  # past the rate limit of the start-up fetch
    results = await asyncio.gather(*(answer(filter_, token(keys["b"], "b")) for _ in range(20)))
    assert results == [None] * 20
    assert server.fetches == 2


async def test_unreachable_jwks_answers_503(keys: dict[str, rsa.RSAPrivateKey], make_filter: Any) -> None:
    with socket.socket() as probe:  # a port with nothing listening: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    filter_, registry = await make_filter(
        f"http://127.0.0.1:{port}/jwks.json", jwks_min_refresh_interval="1h", jwks_refresh_interval="1h"
    )
    decision = await answer(filter_, token(keys["a"], "a"))
    assert decision is not None and decision.status == 503
    assert "signing keys are not available" in reason(decision)
    labels = {"filter": "auth_jwt", "route": "r1", "decision": "unavailable"}
    assert registry.get_sample_value("turnout_filter_decisions_total", labels) == 1


async def test_keys_arrive_after_a_failed_start(
    server: JwksServer, keys: dict[str, rsa.RSAPrivateKey], make_filter: Any
) -> None:
    server.publish(("a", keys["a"]))
    server.status = 503
    # The start-up fetch fails; the filter starts anyway and retries after the short interval.
    filter_, _ = await make_filter(server.url, jwks_min_refresh_interval="50ms", jwks_refresh_interval="1h")
    decision = await answer(filter_, token(keys["a"], "a"))
    assert decision is not None and decision.status == 503
    server.status = 200

    async def accepted() -> bool:
        return await answer(filter_, token(keys["a"], "a")) is None

    await wait_until(accepted)


async def test_stop_ends_the_background_refresh(
    server: JwksServer, keys: dict[str, rsa.RSAPrivateKey], make_filter: Any
) -> None:
    server.publish(("a", keys["a"]))
    filter_, _ = await make_filter(server.url, jwks_min_refresh_interval="20ms", jwks_refresh_interval="20ms")

    async def refreshed() -> bool:
        return server.fetches >= 3

    await wait_until(refreshed)
    await filter_.stop()
    fetches = server.fetches
    await asyncio.sleep(0.1)
    assert server.fetches == fetches

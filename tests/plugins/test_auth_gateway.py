"""The authentication, authorization, CORS and transform filters in a real gateway, end to end.

The filters are named by import path, as a third-party plugin would be, so this test needs no entry
in the name map; the upstream is the echo server, which shows exactly what the gateway forwarded.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import aiohttp
import jwt

from tests.conftest import gateway_config
from tests.support.processes import Process

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
API_KEY = "demo-key-1"
ORIGIN = "https://app.example.com"


def token(**claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://id.example",
        "aud": "fraud",
        "sub": "alice",
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    return jwt.encode(payload, SECRET, algorithm="HS256")


def filters() -> list[dict[str, Any]]:
    provider = {
        "name": "idp",
        "issuer": "https://id.example",
        "audiences": ["fraud"],
        "algorithms": ["HS256"],
        "secret": SECRET,
        "forward_claims": {"sub": "x-user-id"},
    }
    key = {"sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "principal": "svc", "scopes": ["infer"]}
    return [
        {"plugin": "plugins.cors:FACTORY", "config": {"allow_origins": [ORIGIN]}},
        {"plugin": "plugins.auth_jwt:FACTORY", "config": {"providers": [provider], "optional": True}},
        {"plugin": "plugins.auth_apikey:FACTORY", "config": {"keys": [key], "sources": ["x-api-key"]}},
        {"plugin": "plugins.authz:FACTORY", "config": {"any_scopes": ["infer"]}},
        {
            "plugin": "plugins.transform:FACTORY",
            "config": {
                "request_headers": {"add": {"x-gateway": "turnout"}},
                "response_headers": {"add": {"x-transformed": "yes"}},
                "request_body_rename": {"text": "inputs.text"},
            },
        },
    ]


async def test_filters_in_the_data_path(make_gateway: Any, upstream_a: Process) -> None:
    routes = [{"name": "r", "match": {"prefix": "/"}, "backend": {"cluster": "up"}, "filters": filters()}]
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=routes)
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"

        async with session.options(
            url, headers={"origin": ORIGIN, "access-control-request-method": "POST"}
        ) as r:
            assert r.status == 204
            assert r.headers["access-control-allow-origin"] == ORIGIN

        async with session.post(url, headers={"origin": ORIGIN}, json={"text": "hi"}) as r:
            assert r.status == 401
            assert r.headers["www-authenticate"] == 'Bearer realm="turnout"'
            assert r.headers["access-control-allow-origin"] == ORIGIN  # a page can read why it failed

        headers = {
            "authorization": f"Bearer {token(scope='infer')}",
            "x-user-id": "mallory",
            "origin": ORIGIN,
        }
        async with session.post(url, headers=headers, json={"text": "hi"}) as r:
            assert r.status == 200
            assert r.headers["x-transformed"] == "yes"
            echoed = await r.json()
        forwarded = echoed["headers"]
        assert "authorization" not in forwarded
        assert forwarded["x-user-id"] == "alice"
        assert forwarded["x-gateway"] == "turnout"
        assert echoed["body"] == '{"inputs":{"text":"hi"}}'

        async with session.post(url, headers={"x-api-key": API_KEY}, json={"text": "hi"}) as r:
            assert r.status == 200
            forwarded = (await r.json())["headers"]
        assert "x-api-key" not in forwarded and "x-user-id" not in forwarded

        async with session.post(url, headers={"authorization": f"Bearer {token(scope='read')}"}) as r:
            assert r.status == 403
            assert (await r.json())["missing"] == {"any_scopes": ["infer"]}

        async with session.post(url, headers={"authorization": f"Bearer {token(exp=1)}"}) as r:
            assert r.status == 401
            assert 'error_description="the token has expired"' in r.headers["www-authenticate"]

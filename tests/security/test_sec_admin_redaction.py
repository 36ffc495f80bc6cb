"""`/admin/config` shows the effective config without a secret in it: a config holding every kind of
secret the gateway knows, read back from a real gateway's admin port."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from gateway.config_redaction import MASK, redact, redact_url
from tests.conftest import gateway_config
from tests.support.processes import Process

# Each secret carries this marker, so one search of the answer finds any that leaked.
LEAK = "leaked"
# 32 bytes: the least an HS256 secret may be.
JWT_SECRET = f"jwt-{LEAK}-" + "s" * 22


def _config_with_every_secret(upstream: Process) -> dict[str, Any]:
    routes = [
        {
            "name": "keyed",
            "match": {"prefix": "/keyed/", "headers": {"x-api-key": f"match-{LEAK}"}},
            "backend": {"cluster": "up"},
            "request_headers": {
                "add": {
                    "authorization": f"Bearer auth-{LEAK}",
                    "proxy-authorization": f"Basic proxy-{LEAK}",
                    "x-api-key": f"key-{LEAK}",
                    "cookie": f"session=cookie-{LEAK}",
                    "x-upstream-token": f"custom-{LEAK}",
                    "x-tenant": "acme",
                },
                "remove": ["x-debug"],
            },
            "filters": [
                {
                    "auth_apikey": {
                        "keys": [{"sha256": "ab" * 32, "principal": "svc-a"}],
                    }
                },
                {
                    # Nothing listens on port 1: the cache acts as empty, and the gateway starts.
                    "cache": {
                        "backend": "redis",
                        "redis_url": f"redis://cacheuser:cache-{LEAK}@127.0.0.1:1/0",
                    }
                },
            ],
        },
        {
            "name": "jwt",
            "match": {"prefix": "/jwt/"},
            "backend": {"cluster": "up"},
            "filters": [
                {
                    "auth_jwt": {
                        "providers": [
                            {
                                "name": "hs",
                                "issuer": "https://issuer.example",
                                "audiences": ["fraud"],
                                "algorithms": ["HS256"],
                                "secret": JWT_SECRET,
                            }
                        ]
                    }
                }
            ],
        },
        {"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "up"}},
    ]
    config = gateway_config(
        [f"127.0.0.1:{upstream.port}"],
        routes=routes,
        state={"backend": "memory", "url": f"redis://:state-{LEAK}@127.0.0.1:1/0?password=query-{LEAK}"},
    )
    config["admin"]["token"] = f"admin-{LEAK}"
    return config


async def test_admin_config_hides_every_secret_and_keeps_the_rest(
    make_gateway: Any, upstream_a: Process
) -> None:
    config = _config_with_every_secret(upstream_a)
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.admin_port}/admin/config"
        headers = {"Authorization": f"Bearer admin-{LEAK}"}
        async with session.get(url, headers=headers) as response:
            assert response.status == 200
            text = await response.text()
    assert LEAK not in text, [line for line in text.splitlines() if LEAK in line]
    assert "ab" * 32 not in text  # the API key's hash
    effective = json.loads(text)
    assert effective["admin"]["token"] == MASK
    assert effective["state"]["url"] == f"redis://:{MASK}@127.0.0.1:1/0?password={MASK}"
    keyed, jwt = effective["routes"][0], effective["routes"][1]
    added = keyed["request_headers"]["add"]
    assert added == {
        "authorization": MASK,
        "proxy-authorization": MASK,
        "x-api-key": MASK,
        "cookie": MASK,
        "x-upstream-token": MASK,
        "x-tenant": "acme",  # not a credential: still shown
    }
    assert keyed["request_headers"]["remove"] == ["x-debug"]
    dumped = json.dumps(keyed["filters"])
    assert f"redis://cacheuser:{MASK}@127.0.0.1:1/0" in dumped  # the user and host stay readable
    assert '"principal": "svc-a"' in dumped
    assert JWT_SECRET not in json.dumps(jwt) and "https://issuer.example" in json.dumps(jwt)


def test_urls_lose_passwords_and_secret_query_values_only() -> None:
    assert redact_url("redis://:pw@host:6379/0") == f"redis://:{MASK}@host:6379/0"
    assert redact_url("redis://user:pw@host") == f"redis://user:{MASK}@host"
    assert redact_url("redis://pw@host") == f"redis://{MASK}@host"
    assert redact_url("rediss://h:6380/1?ssl_cert_reqs=none&token=t") == (
        f"rediss://h:6380/1?ssl_cert_reqs=none&token={MASK}"
    )
    assert redact_url("http://jwks.example/keys.json") == "http://jwks.example/keys.json"


def test_key_material_is_hidden_but_key_paths_stay() -> None:
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE...\n-----END EC PRIVATE KEY-----\n"
    tree = {
        "listen": {"tls": {"cert": "certs/server.pem", "key": "certs/server.key"}},
        "inline_key": pem,
        "jwks": {
            "keys": [
                {"kty": "oct", "kid": "a", "k": "c2VjcmV0"},
                {"kty": "RSA", "kid": "b", "n": "public-modulus", "e": "AQAB", "d": "private-exponent"},
            ]
        },
        "health": {"headers": {"Authorization": "Bearer x", "Accept": "application/json"}},
        "match": {"headers": {"authorization": {"present": True}, "cookie": {"regex": "s=.*"}}},
        "db_password": 12345678,
        "api_keys_sha256": ["ab" * 32],
        "balancer": {"hash_on": "header", "key": "x-user"},
        "auth_jwt": {"forward_token": True, "allow_credentials": False},
    }
    assert redact(tree) == {
        "listen": {"tls": {"cert": "certs/server.pem", "key": "certs/server.key"}},
        "inline_key": MASK,
        "jwks": {
            "keys": [
                {"kty": "oct", "kid": "a", "k": MASK},
                {"kty": "RSA", "kid": "b", "n": "public-modulus", "e": "AQAB", "d": MASK},
            ]
        },
        "health": {"headers": {"Authorization": MASK, "Accept": "application/json"}},
        "match": {"headers": {"authorization": {"present": True}, "cookie": {"regex": MASK}}},
        "db_password": MASK,
        "api_keys_sha256": MASK,
        "balancer": {"hash_on": "header", "key": "x-user"},
        "auth_jwt": {"forward_token": True, "allow_credentials": False},
    }

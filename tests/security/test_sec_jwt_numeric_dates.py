"""JWT time claims must be JSON numbers (RFC 7519 2, NumericDate), through a real gateway: a string
or a boolean `exp`, `nbf` or `iat` is refused, also when sent again (the verified-token cache), and
a numeric `exp` still ends a remembered verification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from plugins.auth_jwt.claims import ClaimMapping
from plugins.auth_jwt.config import JwtProvider
from tests.conftest import gateway_config
from tests.support.processes import Process

ISSUER = "https://id.example"
AUDIENCE = "fraud"
SECRET = "s" * 48  # long enough for HS256


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token(payload: str) -> str:
    """An HS256 token over `payload` as written (JSON text), so claims can be any JSON value."""
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + _b64(payload.encode())
    signature = hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


def payload(**times: str) -> str:
    """Claims as JSON text; `times` are raw JSON values of exp, nbf and iat (exp defaults to soon)."""
    fields = {"exp": str(int(time.time()) + 300), **times}
    extra = "".join(f',"{name}":{value}' for name, value in fields.items())
    return f'{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"alice"{extra}}}'


Send = Callable[[str], Any]


@pytest.fixture
async def send(make_gateway: Any, upstream_a: Process) -> AsyncIterator[Send]:
    """`await send(token)` -> (status, WWW-Authenticate) from a gateway whose route needs a JWT."""
    provider = {"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["HS256"]}
    provider |= {"secret": SECRET, "leeway": "0s"}
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {
                "name": "guarded",
                "match": {"prefix": "/"},
                "backend": {"cluster": "up"},
                "filters": [{"auth_jwt": {"providers": [provider]}}],
            }
        ],
    )
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:

        async def one(jwt: str) -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {jwt}"}
            async with session.get(f"http://127.0.0.1:{gateway.data_port}/x", headers=headers) as response:
                return response.status, response.headers.get("www-authenticate", "")

        yield one


NOT_A_NUMBER = "the token's {} claim is not a number"


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        ("exp", '"9999999999"', NOT_A_NUMBER),
        ("exp", '"1e10"', "the token is malformed"),  # not even int() reads it
        ("exp", "true", "the token has expired"),  # PyJWT reads true as 1: long past
        ("exp", "[9999999999]", "the token is malformed"),
        ("nbf", '"0"', NOT_A_NUMBER),
        ("nbf", "false", NOT_A_NUMBER),
        ("iat", '"1700000000"', NOT_A_NUMBER),
        ("iat", "true", NOT_A_NUMBER),
        ("iat", "null", NOT_A_NUMBER),
    ],
)
async def test_a_time_claim_that_is_not_a_number_is_refused(
    send: Send, claim: str, value: str, reason: str
) -> None:
    refused = token(payload(**{claim: value}))
    for _ in range(2):  # the second time would come from the verified-token cache
        status, challenge = await send(refused)
        assert status == 401
        assert f'error_description="{reason.format(claim)}"' in challenge


async def test_a_string_exp_is_refused_with_its_reason(send: Send) -> None:
    status, challenge = await send(token(payload(exp='"9999999999"')))
    assert status == 401
    assert "the token's exp claim is not a number" in challenge


async def test_numeric_time_claims_are_accepted(send: Send) -> None:
    now = int(time.time())
    for times in (
        {"exp": str(now + 300), "nbf": str(now - 10), "iat": str(now)},
        {"exp": f"{now + 300}.5", "iat": f"{now}.25"},  # NumericDate allows fractions
        {"exp": "1" + "0" * 400},  # an integer past any float: remembered without converting it
    ):
        status, challenge = await send(token(payload(**times)))
        assert status == 200, (times, challenge)


async def test_a_remembered_verification_ends_at_exp(send: Send) -> None:
    short = token(payload(exp=str(int(time.time()) + 2)))
    assert (await send(short))[0] == 200
    assert (await send(short))[0] == 200  # remembered
    await asyncio.sleep(max(0.0, int(time.time()) + 3 - time.time()))  # past exp, with leeway 0
    status, challenge = await send(short)
    assert status == 401 and "expired" in challenge


def test_a_forwarded_claim_nested_too_deep_to_write_is_dropped() -> None:
    provider = JwtProvider.model_validate(
        {"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["HS256"], "secret": SECRET}
        | {"forward_claims": {"ctx": "x-ctx"}}
    )
    deep: dict[str, Any] = {"v": 1}
    for _ in range(300):  # orjson writes at most 254 levels
        deep = {"a": deep}
    mapping = ClaimMapping(provider)
    assert mapping.forwarded({"ctx": deep}) == []
    assert mapping.forwarded({"ctx": {"a": [1]}}) == [("x-ctx", '{"a":[1]}')]

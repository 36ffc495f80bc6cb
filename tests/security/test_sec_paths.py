"""Path normalisation over real sockets: no spelling of a guarded path slips past its route's filters.

A gateway with routes behind `auth_apikey` (prefix, exact, regex, and an OIP model route with an
authz rule) and an open catch-all `/`; the upstream echoes the request target it received. Each
variant must be refused without a key exactly like the plain path, and with a key the upstream must
receive the plain path: the normalised path is the one everything sees.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import gateway_config
from tests.support.raw_echo import RawEcho
from tests.support.raw_http import get

READER_KEY = "reader-key"
ANALYST_KEY = "analyst-key"


def _keys() -> list[dict[str, Any]]:
    return [
        {"sha256": hashlib.sha256(READER_KEY.encode()).hexdigest(), "principal": "bob", "roles": ["reader"]},
        {
            "sha256": hashlib.sha256(ANALYST_KEY.encode()).hexdigest(),
            "principal": "ann",
            "roles": ["analyst"],
        },
    ]


def _routes() -> list[dict[str, Any]]:
    guard = {"auth_apikey": {"keys": _keys()}}
    # Model `risk` is refused to everyone but analysts; any other model needs a key.
    authz = {"authz": {"models": {"risk": {"roles": ["analyst"]}, "*": {}}}}
    backend = {"cluster": "up"}
    return [
        {"name": "limited", "match": {"prefix": "/limited/"}, "backend": backend, "filters": [guard]},
        {"name": "exact", "match": {"path": "/exact/x"}, "backend": backend, "filters": [guard]},
        {"name": "regex", "match": {"regex": "^/re/[a-z]+$"}, "backend": backend, "filters": [guard]},
        {"name": "models", "match": {"prefix": "/v2/models/"}, "backend": backend, "filters": [guard, authz]},
        {"name": "open", "match": {"prefix": "/"}, "backend": backend},
    ]


Started = Callable[..., Any]


@pytest.fixture
def guarded(make_gateway: Any) -> Started:
    """Start the guarded gateway in front of a fresh echo upstream; yields (port, echo)."""

    @asynccontextmanager
    async def start(listen: dict[str, Any] | None = None, **top: Any) -> AsyncIterator[tuple[int, RawEcho]]:
        async with RawEcho() as echo:
            config = gateway_config([echo.endpoint], routes=_routes(), listen=listen, **top)
            async with make_gateway(config) as gw:
                yield gw.data_port, echo

    return start


# Every spelling of /limited/x: encoded unreserved characters, dot segments (plain and encoded),
# repeated slashes, and their mixtures.
LIMITED_VARIANTS = [
    "/limited/x",
    "/%6Cimited/x",
    "/%6cimited/x",
    "/lim%69ted/x",
    "/limited/%78",
    "/open/../limited/x",
    "/open/%2e%2e/limited/x",
    "/open/.%2E/limited/x",
    "/%2e%2e/limited/x",
    "/../limited/x",
    "/../../limited/x",
    "//limited/x",
    "///limited//x",
    "/./limited/x",
    "/%2e/limited/x",
    "/limited/./x",
    "/limited/y/../x",
    "/limited/y/%2e%2e/x",
    "/open/..//limited/x",
]
EXACT_VARIANTS = [
    "/exact/x",
    "/%65xact/x",
    "//exact/x",
    "/exact/./x",
    "/exact//x",
    "/exact/y/../x",
    "/%2e/exact/x",
]
REGEX_VARIANTS = ["/re/abc", "/r%65/abc", "/re/%61bc", "//re/abc", "/re/./abc", "/x/../re/abc", "/re//abc"]


@pytest.mark.parametrize(
    ("target", "normal"),
    [(v, "/limited/x") for v in LIMITED_VARIANTS]
    + [(v, "/exact/x") for v in EXACT_VARIANTS]
    + [(v, "/re/abc") for v in REGEX_VARIANTS],
)
async def test_every_spelling_of_a_guarded_path_needs_the_key(
    guarded: Started, target: str, normal: str
) -> None:
    async with guarded() as (port, echo):
        refused = await get(port, target)
        assert refused.status == 401, (target, refused.body)
        assert echo.targets == []
        allowed = await get(port, target, {"x-api-key": READER_KEY})
        assert allowed.status == 200, (target, allowed.body)
        assert allowed.json()["target"] == normal
        assert echo.targets == [normal]


async def test_the_open_route_still_serves_without_a_key(guarded: Started) -> None:
    # The control for the test above: an unguarded path gets through, so a 401 there means the guard.
    async with guarded() as (port, echo):
        for target, normal in [("/open/x", "/open/x"), ("/open/%78/./y//z", "/open/x/y/z"), ("/", "/")]:
            answer = await get(port, target)
            assert answer.status == 200
            assert answer.json()["target"] == normal
        assert echo.targets == ["/open/x", "/open/x/y/z", "/"]


async def test_an_encoded_model_route_needs_the_key(guarded: Started) -> None:
    async with guarded() as (port, echo):
        assert (await get(port, "/%762/models/risk/infer")).status == 401
        assert (await get(port, "/%762/models/churn/infer")).status == 401
        allowed = await get(port, "/%762/models/churn/infer", {"x-api-key": READER_KEY})
        assert allowed.status == 200
        assert allowed.json()["target"] == "/v2/models/churn/infer"
        assert echo.targets == ["/v2/models/churn/infer"]


@pytest.mark.parametrize(
    "target",
    [
        "/v2/models/risk/infer",
        "/v2/models/ris%6B/infer",
        "/v2/models/%72isk/infer",
        "/%762/models/risk/infer",
        "/v2/models/./risk/infer",
        "/v2//models/risk/infer",
        "/v2/models/churn/../risk/infer",
        "/v2/models/risk/./infer",
    ],
)
async def test_an_authz_rule_refusing_a_model_holds_for_every_spelling(guarded: Started, target: str) -> None:
    async with guarded() as (port, echo):
        refused = await get(port, target, {"x-api-key": READER_KEY})
        assert refused.status == 403, (target, refused.body)
        assert echo.targets == []
        allowed = await get(port, target, {"x-api-key": ANALYST_KEY})
        assert allowed.status == 200
        assert allowed.json()["target"] == "/v2/models/risk/infer"


@pytest.mark.parametrize(
    "target",
    [
        "/limited%2Fx",
        "/limited/a%2fb",
        "/open%2F..%2Flimited/x",
        "/limited/a%5Cb",
        "/limited/a%5cb",
        "/limited\\x",
        "/open\\..\\limited\\x",
        "/limited/%zz",
        "/limited/%",
        "/limited/x%4",
        "/limited/%%78",
        "/limited/x#frag",
    ],
)
async def test_escaped_separators_and_broken_escapes_are_refused(guarded: Started, target: str) -> None:
    async with guarded() as (port, echo):
        for headers in ({}, {"x-api-key": READER_KEY}):
            refused = await get(port, target, headers)
            assert refused.status == 400, (target, refused.body)
            assert refused.headers["content-type"] == "application/json"
            assert refused.json()["code"] == "invalid_path"
        assert echo.targets == []


async def test_a_nul_in_the_path_is_refused(guarded: Started) -> None:
    async with guarded() as (port, echo):
        refused = await get(port, "/limited/x\x00y")
        assert refused.status == 400
        assert echo.targets == []


async def test_escaped_separators_can_be_kept_escaped(guarded: Started) -> None:
    async with guarded(listen={"escaped_slashes": "keep"}) as (port, echo):
        # Kept as one segment, the hex upper-cased: /open%2F..%2Flimited is not /limited.
        answer = await get(port, "/open%2f..%2flimited/x")
        assert answer.status == 200
        assert answer.json()["target"] == "/open%2F..%2Flimited/x"
        assert (await get(port, "/%6Cimited/a%2fb")).status == 401
        allowed = await get(port, "/%6Cimited/a%2fb%5c/./c", {"x-api-key": READER_KEY})
        assert allowed.json()["target"] == "/limited/a%2Fb%5C/c"
        # Broken escapes and raw backslashes are refused whatever the option says.
        assert (await get(port, "/limited/%zz")).status == 400
        assert (await get(port, "/limited\\x")).status == 400
        assert echo.targets == ["/open%2F..%2Flimited/x", "/limited/a%2Fb%5C/c"]


async def test_the_query_is_forwarded_as_sent(guarded: Started) -> None:
    async with guarded() as (port, _):
        answer = await get(port, "/%6Cimited/./x?a=%2F&b=../c&c=%6C//", {"x-api-key": READER_KEY})
        assert answer.json()["target"] == "/limited/x?a=%2F&b=../c&c=%6C//"
        # A path that needs nothing is forwarded byte for byte, query included.
        answer = await get(port, "/limited/x?q=%2e%2e", {"x-api-key": READER_KEY})
        assert answer.json()["target"] == "/limited/x?q=%2e%2e"


async def test_other_escapes_are_kept_with_upper_case_hex(guarded: Started) -> None:
    async with guarded() as (port, _):
        answer = await get(port, "/open/caf%c3%a9/%20/%25%32%65")
        # %25 stays escaped, so %2532%65 never becomes a dot segment by double decoding.
        assert answer.json()["target"] == "/open/caf%C3%A9/%20/%252e"


async def test_the_access_log_records_the_normalised_path(guarded: Started, tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    async with guarded(access_log={"enabled": True, "path": str(log_path)}) as (port, _):
        assert (await get(port, "/open/%2e%2e/%6Cimited//x")).status == 401
    paths = [json.loads(line)["path"] for line in log_path.read_text().splitlines()]
    assert paths == ["/limited/x"]


async def test_a_cache_key_is_the_normalised_path(make_gateway: Any) -> None:
    routes = [
        {"name": "cached", "match": {"prefix": "/"}, "backend": {"cluster": "up"}, "filters": [{"cache": {}}]}
    ]
    async with RawEcho() as echo:
        async with make_gateway(gateway_config([echo.endpoint], routes=routes)) as gw:
            first = await get(gw.data_port, "/models/a")
            second = await get(gw.data_port, "/models/./x/../%61")
            assert first.status == second.status == 200
            assert second.body == first.body
        assert echo.targets == ["/models/a"]


@pytest.mark.parametrize(
    ("match", "says"),
    [
        ("{prefix: /api//v1/}", "write '/api/v1/'"),
        ("{path: /%7Euser}", "write '/~user'"),
        ("{prefix: /a/../b}", "write '/b'"),
        ("{prefix: /a%zz}", "invalid percent-encoding"),
        ("{path: '/a\\b'}", "backslash"),
    ],
)
def test_a_route_that_no_normalised_path_could_match_is_refused_at_load(
    tmp_path: Path, match: str, says: str
) -> None:
    from gateway.config import ConfigError
    from gateway.loading import load_gateway_config

    path = tmp_path / "routes.yaml"
    clusters = "clusters: {up: {endpoints: [127.0.0.1:9]}}\n"
    path.write_text(f"{clusters}routes:\n  - match: {match}\n    backend: {{cluster: up}}\n")
    with pytest.raises(ConfigError) as refused:
        load_gateway_config(path)
    assert any(error.startswith(f"{path}:3:") and says in error for error in refused.value.errors), (
        refused.value.errors
    )


def test_escaped_slashes_takes_reject_or_keep(tmp_path: Path) -> None:
    from gateway.config import ConfigError
    from gateway.loading import load_gateway_config

    path = tmp_path / "listen.yaml"
    path.write_text("listen: {escaped_slashes: decode}\nclusters: {up: {endpoints: [127.0.0.1:9]}}\n")
    with pytest.raises(ConfigError) as refused:
        load_gateway_config(path)
    assert any("escaped_slashes" in error and "reject" in error for error in refused.value.errors)


def test_a_router_rule_refuses_a_path_it_could_never_match() -> None:
    from routing.router import RouteRule

    with pytest.raises(ValueError, match="write '/a/b'"):
        RouteRule(name="r", payload=None, prefix="/a//b")
    with pytest.raises(ValueError, match="percent-encoding"):
        RouteRule(name="r", payload=None, path="/a%zz")


async def test_a_rate_limit_by_model_counts_every_spelling_of_the_model(make_gateway: Any) -> None:
    limit = {"rate_limit": {"limits": [{"key": "model", "rate": "1/min"}]}}
    routes = [
        {
            "name": "models",
            "match": {"prefix": "/v2/models/"},
            "backend": {"cluster": "up"},
            "filters": [limit],
        }
    ]
    async with RawEcho() as echo:
        async with make_gateway(gateway_config([echo.endpoint], routes=routes)) as gw:
            assert (await get(gw.data_port, "/v2/models/risk/infer")).status == 200
            for spelling in (
                "/v2/models/ris%6B/infer",
                "/%762/models/risk/infer",
                "/v2//models/./risk/infer",
            ):
                assert (await get(gw.data_port, spelling)).status == 429, spelling
            assert (await get(gw.data_port, "/v2/models/churn/infer")).status == 200  # its own bucket
        assert echo.targets == ["/v2/models/risk/infer", "/v2/models/churn/infer"]

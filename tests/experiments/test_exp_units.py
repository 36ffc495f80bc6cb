"""Unit ids from requests, and the sticky cookie issued when there is none."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from experiments.units import COOKIE_MAX_AGE_S, MAX_UNIT_ID_LENGTH, UnitResolver, unit_source
from gateway.core.context import Principal, RequestContext

Context = Callable[..., RequestContext]


def test_sources_are_tried_in_order(context: Context) -> None:
    resolver = UnitResolver(
        ["header:x-user-id", "cookie:turnout_uid"], issue_cookie=False, secure_cookie=False
    )
    both = context({"x-user-id": "h1", "cookie": "turnout_uid=c1"})
    cookie_only = context({"cookie": "other=1; turnout_uid=c1"})
    assert resolver.resolve(both) == ("h1", None)
    assert resolver.resolve(cookie_only) == ("c1", None)
    assert resolver.resolve(context()) == (None, None)


def test_query_and_jwt_sources(context: Context) -> None:
    assert unit_source("query:uid")(context(query="a=1&uid=q7")) == "q7"
    sub = unit_source("jwt:sub")
    assert sub(context(principal=Principal(id="alice"))) == "alice"
    tenant = unit_source("jwt:account")
    assert tenant(context(state={"jwt_claims": {"account": 1234}})) == "1234"
    assert tenant(context(state={"jwt_claims": {"account": True}})) is None
    assert sub(context()) is None


def test_empty_and_oversized_ids_count_as_missing(context: Context) -> None:
    source = unit_source("header:x-user-id")
    assert source(context({"x-user-id": ""})) is None
    assert source(context({"x-user-id": "u" * (MAX_UNIT_ID_LENGTH + 1)})) is None
    assert source(context({"x-user-id": "u" * MAX_UNIT_ID_LENGTH})) == "u" * MAX_UNIT_ID_LENGTH


def test_issued_cookie_has_the_sticky_attributes(context: Context) -> None:
    resolver = UnitResolver(
        ["header:x-user-id", "cookie:turnout_uid"], issue_cookie=True, secure_cookie=False
    )
    unit_id, set_cookie = resolver.resolve(context())
    assert unit_id and set_cookie
    parts = [part.strip() for part in set_cookie.split(";")]
    assert parts[0] == f"turnout_uid={unit_id}"
    assert {"Path=/", f"Max-Age={COOKIE_MAX_AGE_S}", "HttpOnly", "SameSite=Lax"} <= set(parts)
    assert "Secure" not in parts
    # The issued id is random: two cookieless requests get different units.
    assert resolver.resolve(context())[0] != unit_id


def test_issued_cookie_is_secure_on_tls(context: Context) -> None:
    resolver = UnitResolver(["cookie:sid"], issue_cookie=True, secure_cookie=True)
    _, set_cookie = resolver.resolve(context())
    assert set_cookie is not None and set_cookie.startswith("sid=") and set_cookie.endswith("; Secure")


def test_no_cookie_is_issued_when_an_id_is_present(context: Context) -> None:
    resolver = UnitResolver(["cookie:turnout_uid"], issue_cookie=True, secure_cookie=False)
    assert resolver.resolve(context({"cookie": "turnout_uid=abc"})) == ("abc", None)


def test_bad_sources_are_refused() -> None:
    with pytest.raises(ValueError):
        unit_source("body:uid")
    with pytest.raises(ValueError):
        UnitResolver(["header:x-user-id"], issue_cookie=True, secure_cookie=False)

"""The filter chains the proxy benchmark puts on turnout's route, and the token the typical one needs."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from _chains import AUDIENCE, CHAIN_NAMES, ISSUER, SUBJECT, build_chain, mint_token
from _turnout import turnout_config

from gateway.loading import load_gateway_config

SECRET = "a-test-secret-of-more-than-thirty-two-bytes"


@pytest.mark.parametrize("name", CHAIN_NAMES)
def test_every_chain_makes_a_config_the_gateway_accepts(tmp_path: Path, name: str) -> None:
    chain = build_chain(name)
    path = tmp_path / "turnout.yaml"
    path.write_text(turnout_config(8080, 9901, 9000, None, chain.filters))

    config = load_gateway_config(path)  # raises ConfigError, filter options included, when invalid

    (route,) = config.routes
    assert [spec.name for spec in route.filters] == [next(iter(spec)) for spec in chain.filters]
    assert [spec.config for spec in route.filters] == [next(iter(spec.values())) for spec in chain.filters]


def test_typical_chain_is_auth_then_rate_limit_then_cache_with_a_token_for_its_provider() -> None:
    chain = build_chain("typical", secret=SECRET)

    assert [next(iter(spec)) for spec in chain.filters] == ["auth_jwt", "rate_limit", "cache"]
    assert chain.unique_query
    ((name, value),) = chain.headers
    assert name == "Authorization"
    scheme, token = value.split(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == SUBJECT
    assert claims["exp"] > time.time() + 3600
    provider = chain.filters[0]["auth_jwt"]["providers"][0]
    assert provider["secret"] == SECRET
    assert provider["issuer"] == ISSUER
    assert provider["audiences"] == [AUDIENCE]


def test_each_typical_chain_gets_its_own_secret() -> None:
    first, second = build_chain("typical"), build_chain("typical")

    secrets = {chain.filters[0]["auth_jwt"]["providers"][0]["secret"] for chain in (first, second)}
    assert len(secrets) == 2
    assert all(len(secret.encode()) >= 32 for secret in secrets)  # HS256 needs 32 bytes or more


def test_token_minted_at_a_given_time_expires_a_day_later() -> None:
    token = mint_token(SECRET, now=1_000_000)

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == 1_000_000
    assert claims["exp"] == 1_000_000 + 24 * 3600


def test_no_filters_and_cache_hit_send_plain_repeated_requests() -> None:
    none, hit = build_chain("none"), build_chain("cache-hit")

    assert none.filters == ()
    assert [next(iter(spec)) for spec in hit.filters] == ["cache"]
    for chain in (none, hit):
        assert chain.headers == ()
        assert not chain.unique_query


def test_an_unknown_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown chain 'heavy'"):
        build_chain("heavy")


def test_requests_are_described_as_sent() -> None:
    assert build_chain("none").requests == "GET /"
    assert build_chain("typical", secret=SECRET).requests == (
        "GET /?n=<count> (a query string of its own per request), with an Authorization header"
    )


def test_typical_raw_body_chain_differs_from_typical_only_in_the_cache_key_of_bodies() -> None:
    typical = build_chain("typical", secret=SECRET)
    raw = build_chain("typical-raw-body", secret=SECRET)

    assert raw.filters[:2] == typical.filters[:2]
    assert raw.filters[2] == {"cache": {"vary_on": ["principal"], "canonical_json": False}}
    assert (raw.headers, raw.unique_query) == (typical.headers, typical.unique_query)

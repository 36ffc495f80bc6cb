"""auth_jwt with inline keys and secrets: the attack list, claims, token sources, forwarding."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.auth_apikey import FACTORY as APIKEY_FACTORY
from plugins.auth_jwt import FACTORY, JwtConfig

ISSUER = "https://id.example"
AUDIENCE = "fraud"
SECRET = "s" * 48  # long enough for HS256 and HS384


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def jwks(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, ed_key: ed25519.Ed25519PrivateKey
) -> dict[str, Any]:
    keys = [
        {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "rsa-1"},
        {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1"},
        {**OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True), "kid": "ed-1"},
    ]
    return {"keys": keys}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def sign(key: Any, payload: dict[str, Any], alg: str = "RS256", kid: str | None = "rsa-1") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_input(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """The signing input of a hand-made token: base64url(header).base64url(payload)."""
    return f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(payload))}"


def provider(key_set: dict[str, Any], /, **overrides: Any) -> dict[str, Any]:
    """A provider config with an inline JWKS; an override of None removes that option."""
    config = {"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": key_set, **overrides}
    return {key: value for key, value in config.items() if value is not None}


def build(config: dict[str, Any]) -> tuple[Filter, CollectorRegistry]:
    registry = CollectorRegistry()
    model = FACTORY.config_model.model_validate(config)
    return FACTORY(model, BuildContext("r1", "c1", registry)), registry


def make_ctx(headers: dict[str, str] | None = None, query: str = "") -> RequestContext:
    return RequestContext(
        "POST", "/v2/models/fraud/infer", query, dict(headers or {}), "127.0.0.1", time.monotonic()
    )


async def call(filter_: Filter, ctx: RequestContext) -> Response | None:
    """The request phase's answer: plain for a token verified before, else awaited."""
    result = filter_.on_request(ctx)
    if result is None or isinstance(result, Response):
        return result
    answer = await result
    assert answer is None or isinstance(answer, Response)
    return answer


async def refused(filter_: Filter, token: str) -> str:
    """The error_description of the 401 answer to `token`."""
    answer = await call(filter_, make_ctx({"authorization": f"Bearer {token}"}))
    assert answer is not None and answer.status == 401, answer
    challenge = answer.header("www-authenticate") or ""
    assert challenge.startswith('Bearer realm="turnout", error="invalid_token", error_description="')
    body = orjson.loads(answer.body or b"")
    assert body["code"] == "unauthorized"
    assert f'error_description="{body["error"]}"' in challenge
    return str(body["error"])


async def accepted(filter_: Filter, token: str) -> RequestContext:
    ctx = make_ctx({"authorization": f"Bearer {token}"})
    assert await call(filter_, ctx) is None
    assert ctx.principal is not None
    return ctx


# --- the attack list -------------------------------------------------------------------------------


async def test_alg_none_is_refused(jwks: dict[str, Any]) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    unsigned = unsigned_input({"alg": "none", "typ": "JWT"}, claims()) + "."
    assert await refused(filter_, unsigned) == "unsigned tokens (alg none) are refused"
    upper = unsigned_input({"alg": "NONE", "kid": "rsa-1"}, claims()) + "."
    assert await refused(filter_, upper) == "unsigned tokens (alg none) are refused"


async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned_input({"alg": "HS256", "kid": "rsa-1"}, claims())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(signature)}"
    assert await refused(filter_, forged) == "the token's algorithm is not accepted"


async def test_expired_token_is_refused_beyond_the_leeway(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    filter_, registry = build({"providers": [provider(jwks, leeway="30s")]})
    now = int(time.time())
    assert await refused(filter_, sign(rsa_key, claims(exp=now - 60))) == "the token has expired"
    await accepted(filter_, sign(rsa_key, claims(exp=now - 10)))  # inside the 30s leeway
    sample = registry.get_sample_value
    assert (
        sample("turnout_filter_decisions_total", {"filter": "auth_jwt", "route": "r1", "decision": "invalid"})
        == 1
    )
    assert (
        sample("turnout_filter_decisions_total", {"filter": "auth_jwt", "route": "r1", "decision": "allow"})
        == 1
    )


async def test_not_yet_valid_token_is_refused(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    token = sign(rsa_key, claims(nbf=int(time.time()) + 120))
    assert await refused(filter_, token) == "the token is not valid yet (nbf)"


async def test_iat_in_the_future_beyond_the_leeway_is_refused(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    token = sign(rsa_key, claims(iat=int(time.time()) + 120))
    assert await refused(filter_, token) == "the token was issued in the future (iat)"


async def test_wrong_audience_is_refused(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    assert (
        await refused(filter_, sign(rsa_key, claims(aud="billing")))
        == "the token is not meant for this audience"
    )
    assert await refused(filter_, sign(rsa_key, claims(aud=None))) == "the token has no 'aud' claim"
    await accepted(filter_, sign(rsa_key, claims(aud=["billing", AUDIENCE])))


async def test_wrong_issuer_is_refused(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    assert (
        await refused(filter_, sign(rsa_key, claims(iss="https://evil.example")))
        == "the token's issuer is not trusted"
    )


async def test_unknown_kid_is_refused(jwks: dict[str, Any]) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = sign(stranger, claims(), kid="rsa-2")
    assert await refused(filter_, token) == "the token's signing key (kid) is unknown"


async def test_token_signed_by_another_key_under_a_known_kid_is_refused(jwks: dict[str, Any]) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await refused(filter_, sign(stranger, claims())) == "the token's signature does not verify"


async def test_tampered_payload_is_refused(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    header, _, signature = sign(rsa_key, claims(scope="read")).split(".")
    tampered = f"{header}.{b64(orjson.dumps(claims(scope='read admin')))}.{signature}"
    assert await refused(filter_, tampered) == "the token's signature does not verify"


async def test_tampered_signature_is_refused(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    header, payload, signature = sign(rsa_key, claims()).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0x01
    assert (
        await refused(filter_, f"{header}.{payload}.{b64(bytes(raw))}")
        == "the token's signature does not verify"
    )


async def test_algorithm_outside_the_allow_list_is_refused(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    filter_, _ = build({"providers": [provider(jwks, algorithms=["RS256"])]})
    assert (
        await refused(filter_, sign(rsa_key, claims(), alg="RS384"))
        == "the token's algorithm is not accepted"
    )
    assert await refused(filter_, sign(ec_key, claims(), alg="ES256", kid="ec-1")) == (
        "the token's algorithm is not accepted"
    )


async def test_key_type_never_chooses_the_algorithm(
    jwks: dict[str, Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    # ES256 is allowed, but the kid names the RSA key: there is no ES256 key under that kid.
    filter_, _ = build({"providers": [provider(jwks, algorithms=["RS256", "ES256"])]})
    assert await refused(filter_, sign(ec_key, claims(), alg="ES256", kid="rsa-1")) == (
        "the token's signing key (kid) is unknown"
    )


async def test_malformed_tokens_are_refused(jwks: dict[str, Any]) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    assert await refused(filter_, "not-a-token") == "the token is malformed"
    assert await refused(filter_, "a.b.c") == "the token is malformed"


async def test_required_claims(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    assert await refused(filter_, sign(rsa_key, claims(exp=None))) == "the token has no 'exp' claim"
    assert await refused(filter_, sign(rsa_key, claims(sub=None))) == "the token has no usable 'sub' claim"


# --- algorithms and keys ---------------------------------------------------------------------------


async def test_every_key_type_verifies(
    jwks: dict[str, Any],
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    ed_key: ed25519.Ed25519PrivateKey,
) -> None:
    algorithms = ["RS256", "RS384", "RS512", "ES256", "EdDSA"]
    filter_, _ = build({"providers": [provider(jwks, algorithms=algorithms)]})
    for alg in ("RS256", "RS384", "RS512"):
        await accepted(filter_, sign(rsa_key, claims(), alg=alg))
    await accepted(filter_, sign(ec_key, claims(), alg="ES256", kid="ec-1"))
    await accepted(filter_, sign(ed_key, claims(), alg="EdDSA", kid="ed-1"))


async def test_hmac_secret_provider() -> None:
    config = {
        "name": "svc",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["HS256"],
        "secret": SECRET,
    }
    filter_, _ = build({"providers": [config]})
    await accepted(filter_, sign(SECRET, claims(), alg="HS256", kid=None))
    assert await refused(filter_, sign("t" * 48, claims(), alg="HS256", kid=None)) == (
        "the token's signature does not verify"
    )
    assert await refused(filter_, sign(SECRET, claims(), alg="HS384", kid=None)) == (
        "the token's algorithm is not accepted"
    )


async def test_token_without_kid_needs_an_unambiguous_key(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    await accepted(filter_, sign(rsa_key, claims(), kid=None))  # the only RS256 key of the set
    second = {
        **RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048).public_key(), as_dict=True),
        "kid": "x",
    }
    filter_, _ = build({"providers": [provider({"keys": [*jwks["keys"], second]})]})
    assert await refused(filter_, sign(rsa_key, claims(), kid=None)) == "the token names no key id (kid)"


async def test_several_providers_are_chosen_by_issuer(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    other = {
        "name": "svc",
        "issuer": "https://svc.example",
        "audiences": ["svc"],
        "algorithms": ["HS256"],
        "secret": SECRET,
    }
    filter_, _ = build({"providers": [provider(jwks), other]})
    await accepted(filter_, sign(rsa_key, claims()))
    await accepted(filter_, sign(SECRET, claims(iss="https://svc.example", aud="svc"), alg="HS256", kid=None))
    # The HS provider's secret never verifies a token claiming the RSA provider's issuer.
    forged = sign(SECRET, claims(), alg="HS256", kid=None)
    assert await refused(filter_, forged) == "the token's algorithm is not accepted"
    assert (
        await refused(filter_, sign(rsa_key, claims(iss="https://evil.example")))
        == "the token's issuer is not trusted"
    )


# --- principal, sources, forwarding ---------------------------------------------------------------


async def test_claims_map_to_the_principal(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    mapping = {"principal_claim": "uid", "tenant_claim": "org", "tier_claim": "plan", "roles_claim": "groups"}
    filter_, _ = build({"providers": [provider(jwks, **mapping)]})
    token = sign(
        rsa_key, claims(uid="u-7", org="acme", plan="gold", groups=["ops", "risk"], scope="infer read")
    )
    ctx = await accepted(filter_, token)
    assert ctx.principal is not None
    assert (ctx.principal.id, ctx.principal.tenant, ctx.principal.tier) == ("u-7", "acme", "gold")
    assert ctx.principal.scopes == {"infer", "read"}
    assert ctx.principal.roles == {"ops", "risk"}
    assert ctx.state["auth_jwt"]["org"] == "acme"


async def test_scopes_claim_may_be_a_list(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    filter_, _ = build({"providers": [provider(jwks, scopes_claim="scp")]})
    ctx = await accepted(filter_, sign(rsa_key, claims(scp=["infer", "admin"])))
    assert ctx.principal is not None and ctx.principal.scopes == {"infer", "admin"}


async def test_missing_token_and_optional(jwks: dict[str, Any]) -> None:
    filter_, _ = build({"providers": [provider(jwks)]})
    answer = await call(filter_, make_ctx())
    assert answer is not None and answer.status == 401
    assert answer.header("www-authenticate") == 'Bearer realm="turnout"'
    optional, registry = build({"providers": [provider(jwks)], "optional": True})
    ctx = make_ctx()
    assert await call(optional, ctx) is None and ctx.principal is None
    labels = {"filter": "auth_jwt", "route": "r1", "decision": "anonymous"}
    assert registry.get_sample_value("turnout_filter_decisions_total", labels) == 1
    assert await refused(optional, "a.b.c") == "the token is malformed"  # a bad token is never anonymous


async def test_token_is_stripped_unless_forwarded(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, claims())
    filter_, _ = build({"providers": [provider(jwks)]})
    ctx = await accepted(filter_, token)
    assert "authorization" not in ctx.headers  # what the request phase leaves is what is sent
    forwarding, _ = build({"providers": [provider(jwks)], "forward_token": True})
    ctx = await accepted(forwarding, token)
    assert ctx.headers["authorization"] == f"Bearer {token}"


async def test_cookie_and_query_sources(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, claims())
    filter_, _ = build({"providers": [provider(jwks)], "cookie": "session", "query_param": "access_token"})
    ctx = make_ctx({"cookie": f"theme=dark; session={token}; lang=en"})
    assert await call(filter_, ctx) is None and ctx.principal is not None
    assert ctx.headers["cookie"] == "theme=dark; lang=en"
    ctx = make_ctx(query=f"verbose=1&access_token={token}&x=2")
    assert await call(filter_, ctx) is None and ctx.principal is not None
    assert ctx.query == "verbose=1&x=2"
    ctx = make_ctx({"cookie": f"session={token}"})
    assert await call(filter_, ctx) is None
    assert "cookie" not in ctx.headers


async def test_forwarded_claims_replace_client_copies(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    forward = {"sub": "x-user-id", "org": "x-tenant", "groups": "x-groups", "missing": "x-missing"}
    filter_, _ = build({"providers": [provider(jwks, forward_claims=forward)]})
    headers = {
        "authorization": f"Bearer {sign(rsa_key, claims(org='acme', groups=['a', 'b']))}",
        "x-user-id": "admin",
        "x-missing": "spoofed",
    }
    ctx = make_ctx(headers)
    assert await call(filter_, ctx) is None
    assert ctx.headers == {"x-groups": "a,b", "x-tenant": "acme", "x-user-id": "alice"}


async def test_spoofed_identity_headers_are_removed_even_when_the_token_is_refused(
    jwks: dict[str, Any],
) -> None:
    filter_, _ = build({"providers": [provider(jwks, forward_claims={"sub": "x-user-id"})], "optional": True})
    ctx = make_ctx({"x-user-id": "admin"})
    assert await call(filter_, ctx) is None
    assert ctx.principal is None and "x-user-id" not in ctx.headers


async def test_claim_with_a_line_break_is_not_forwarded(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    filter_, _ = build({"providers": [provider(jwks, forward_claims={"name": "x-name"})]})
    ctx = await accepted(filter_, sign(rsa_key, claims(name="eve\r\nx-admin: 1")))
    assert "x-name" not in ctx.headers


# --- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algorithms": ["HS256"]}, "HS\\* algorithms need a secret"),
        ({"jwks": None, "secret": SECRET, "algorithms": ["HS256", "RS256"]}, "accepts only HS256"),
        ({"jwks": None, "secret": "short", "algorithms": ["HS256"]}, "at least 32 bytes"),
        ({"jwks": None, "secret": SECRET, "algorithms": ["HS512"]}, "at least 64 bytes"),
        ({"jwks": None}, "exactly one of"),
        ({"jwks_url": "http://127.0.0.1:1/jwks.json"}, "exactly one of"),
        ({"algorithms": ["none"]}, "Input should be"),
        ({"audiences": []}, "at least 1 item"),
        ({"jwks": {"not": "keys"}}, "inline jwks is not usable"),
        ({"jwks": {"keys": ["x"]}}, "key 0 is not an object"),
        ({"jwks": None, "jwks_url": "file:///etc/jwks.json"}, "http:// or https://"),
        ({"forward_claims": {"sub": "x-id", "uid": "X-Id"}}, "same header"),
    ],
)
def test_invalid_provider_configs(jwks: dict[str, Any], overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JwtConfig.model_validate({"providers": [provider(jwks, **overrides)]})


def test_providers_must_have_distinct_issuers(jwks: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="same issuer"):
        JwtConfig.model_validate({"providers": [provider(jwks), provider(jwks, name="two")]})


def test_inline_jwks_without_a_usable_key_is_a_config_error(ec_key: ec.EllipticCurvePrivateKey) -> None:
    only_ec = {"keys": [{**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1"}]}
    with pytest.raises(ValidationError, match="no key suits RS256"):
        JwtConfig.model_validate({"providers": [provider(only_ec)]})


async def test_jwt_then_api_key_chain(jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    """A route accepting a token or an API key: optional auth_jwt first, then auth_apikey."""
    key_entry = {"sha256": hashlib.sha256(b"k-1").hexdigest(), "principal": "svc"}
    apikey = APIKEY_FACTORY(
        APIKEY_FACTORY.config_model.model_validate({"keys": [key_entry]}), BuildContext("r1", "c1", None)
    )
    jwt_filter, _ = build({"providers": [provider(jwks)], "optional": True})
    by_token = make_ctx({"authorization": f"Bearer {sign(rsa_key, claims())}"})
    assert await call(jwt_filter, by_token) is None and apikey.on_request(by_token) is None
    assert by_token.principal is not None and by_token.principal.id == "alice"
    by_key = make_ctx({"x-api-key": "k-1"})
    assert await call(jwt_filter, by_key) is None and apikey.on_request(by_key) is None
    assert by_key.principal is not None and by_key.principal.id == "svc"
    neither = make_ctx()
    assert await call(jwt_filter, neither) is None
    answer = apikey.on_request(neither)
    assert isinstance(answer, Response) and answer.status == 401


async def test_a_token_verified_before_is_admitted_without_awaiting(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    filter_, registry = build({"providers": [provider(jwks, forward_claims={"sub": "x-user-id"})]})
    token = sign(rsa_key, claims(sub="carol"))
    first = make_ctx({"authorization": f"Bearer {token}"})
    pending = filter_.on_request(first)
    assert pending is not None and not isinstance(pending, Response)  # not remembered yet: verified
    assert await pending is None and first.principal is not None
    again = make_ctx({"authorization": f"Bearer {token}", "x-user-id": "admin"})
    assert filter_.on_request(again) is None  # plain: the chain stays on its synchronous path
    assert again.principal is not None and again.principal.id == "carol"
    assert again.headers == {"x-user-id": "carol"}  # the token is stripped, the claim forwarded
    assert (
        registry.get_sample_value(
            "turnout_filter_decisions_total", {"filter": "auth_jwt", "route": "r1", "decision": "allow"}
        )
        == 2
    )
    # Another token is verified on its own, and refused when it must be.
    forged = token.rsplit(".", 1)[0] + "." + b64(b"\0" * 256)
    pending = filter_.on_request(make_ctx({"authorization": f"Bearer {forged}"}))
    assert pending is not None and not isinstance(pending, Response)
    answer = await pending
    assert isinstance(answer, Response) and answer.status == 401


async def test_a_remembered_token_is_verified_again_once_it_expires(
    jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    filter_, _ = build({"providers": [provider(jwks, leeway="0s")]})
    exp = int(time.time()) + 2
    token = sign(rsa_key, claims(exp=exp))
    await accepted(filter_, token)
    assert filter_.on_request(make_ctx({"authorization": f"Bearer {token}"})) is None  # remembered
    deadline = time.monotonic() + 30  # generous on a busy machine; the token expires within 2 s
    while time.time() <= exp + 0.05 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.time() > exp
    assert await refused(filter_, token) == "the token has expired"

"""auth_apikey: hashed keys, header sources, 401 answers, credential stripping, keys files."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.auth_apikey import FACTORY, ApiKeyConfig

DEMO_KEY = "demo-key-1"
DEMO_SHA = hashlib.sha256(DEMO_KEY.encode()).hexdigest()
ALICE = {"sha256": DEMO_SHA, "principal": "alice", "tenant": "acme", "scopes": ["infer"], "tier": "gold"}


def make_ctx(headers: dict[str, str] | None = None) -> RequestContext:
    return RequestContext(
        "POST", "/v2/models/m/infer", "", dict(headers or {}), "127.0.0.1", time.monotonic()
    )


def build(config: dict[str, Any], base_dir: Path | None = None) -> tuple[Filter, CollectorRegistry]:
    registry = CollectorRegistry()
    context = BuildContext("r1", "c1", registry, base_dir=str(base_dir or "."))
    return FACTORY(FACTORY.config_model.model_validate(config), context), registry


def decisions(registry: CollectorRegistry, decision: str) -> float:
    labels = {"filter": "auth_apikey", "route": "r1", "decision": decision}
    return registry.get_sample_value("turnout_filter_decisions_total", labels) or 0.0


def run(filter_: Filter, ctx: RequestContext) -> Response | None:
    result = filter_.on_request(ctx)
    assert result is None or isinstance(result, Response)
    return result


def test_config_holds_only_the_hash_and_the_key_authenticates_alice() -> None:
    config = ApiKeyConfig.model_validate({"keys": [ALICE]})
    assert DEMO_KEY not in config.model_dump_json()
    filter_, registry = build({"keys": [ALICE]})
    ctx = make_ctx({"authorization": f"Bearer {DEMO_KEY}"})
    assert run(filter_, ctx) is None
    assert ctx.principal == Principal("alice", "acme", frozenset({"infer"}), "gold", frozenset())
    assert decisions(registry, "allow") == 1


def test_x_api_key_header_is_a_source_too() -> None:
    filter_, _ = build({"keys": [ALICE]})
    ctx = make_ctx({"x-api-key": DEMO_KEY})
    assert run(filter_, ctx) is None
    assert ctx.principal is not None and ctx.principal.id == "alice"


def test_wrong_key_is_401_invalid_token() -> None:
    filter_, registry = build({"keys": [ALICE]})
    ctx = make_ctx({"x-api-key": "demo-key-2"})
    answer = run(filter_, ctx)
    assert answer is not None and answer.status == 401
    challenge = answer.header("www-authenticate") or ""
    assert challenge.startswith('Bearer realm="turnout"') and 'error="invalid_token"' in challenge
    assert orjson.loads(answer.body or b"") == {"error": "the API key is not valid", "code": "unauthorized"}
    assert ctx.principal is None
    assert decisions(registry, "invalid") == 1


def test_missing_key_is_401_with_a_bare_challenge() -> None:
    filter_, registry = build({"keys": [ALICE]})
    answer = run(filter_, make_ctx())
    assert answer is not None and answer.status == 401
    assert answer.header("www-authenticate") == 'Bearer realm="turnout"'
    assert answer.header("content-type") == "application/json"
    assert decisions(registry, "missing") == 1


def test_non_bearer_authorization_counts_as_missing() -> None:
    filter_, _ = build({"keys": [ALICE]})
    answer = run(filter_, make_ctx({"authorization": "Basic YWxpY2U6c2VjcmV0"}))
    assert answer is not None and answer.header("www-authenticate") == 'Bearer realm="turnout"'


def test_configured_sources_replace_the_defaults() -> None:
    filter_, _ = build({"keys": [ALICE], "sources": ["X-Turnout-Key"]})
    assert run(filter_, make_ctx({"x-turnout-key": DEMO_KEY})) is None
    answer = run(filter_, make_ctx({"x-api-key": DEMO_KEY}))
    assert answer is not None and answer.status == 401


def test_credentials_are_stripped_before_forwarding_by_default() -> None:
    filter_, _ = build({"keys": [ALICE]})
    ctx = make_ctx({"authorization": f"Bearer {DEMO_KEY}", "x-api-key": "other", "accept": "*/*"})
    assert run(filter_, ctx) is None
    assert ctx.headers == {"accept": "*/*"}  # what the request phase leaves is what is sent


def test_forward_credentials_keeps_them() -> None:
    filter_, _ = build({"keys": [ALICE], "forward_credentials": True})
    ctx = make_ctx({"x-api-key": DEMO_KEY})
    assert run(filter_, ctx) is None
    assert ctx.headers["x-api-key"] == DEMO_KEY


def test_optional_lets_anonymous_through_but_still_refuses_a_wrong_key() -> None:
    filter_, registry = build({"keys": [ALICE], "optional": True})
    ctx = make_ctx()
    assert run(filter_, ctx) is None and ctx.principal is None
    assert decisions(registry, "anonymous") == 1
    answer = run(filter_, make_ctx({"x-api-key": "nope"}))
    assert answer is not None and answer.status == 401


def test_keys_file_relative_to_the_config_directory(tmp_path: Path) -> None:
    bob_sha = hashlib.sha256(b"bob-key").hexdigest()
    (tmp_path / "keys.yaml").write_text(
        yaml.safe_dump([{"sha256": bob_sha.upper(), "principal": "bob", "roles": ["ops"]}])
    )
    filter_, _ = build({"keys": [ALICE], "keys_file": "keys.yaml"}, base_dir=tmp_path)
    ctx = make_ctx({"x-api-key": "bob-key"})
    assert run(filter_, ctx) is None
    assert ctx.principal == Principal("bob", roles=frozenset({"ops"}))
    assert run(filter_, make_ctx({"x-api-key": DEMO_KEY})) is None


def test_json_keys_file(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(orjson.dumps([ALICE]).decode())
    filter_, _ = build({"keys_file": "keys.json"}, base_dir=tmp_path)
    assert run(filter_, make_ctx({"x-api-key": DEMO_KEY})) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read keys_file"),
        ("[{principal: x}]", "0.sha256: Field required"),
        ("[{sha256: abc, principal: x}]", "64 hex digits"),
        ("{: :", "not valid YAML"),
    ],
)
def test_bad_keys_files_are_config_errors(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "keys.yaml").write_text(content)
    with pytest.raises(ValueError, match=message):
        build({"keys_file": "keys.yaml"}, base_dir=tmp_path)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="listed twice"):
        build({"keys": [ALICE, {**ALICE, "principal": "mallory"}]})


@pytest.mark.parametrize(
    "config",
    [
        {},  # no keys at all
        {"keys": [{**ALICE, "sha256": "demo-key-1"}]},  # a raw key where a hash belongs
        {"keys": [ALICE], "sources": []},
        {"keys": [ALICE], "sources": ["bad header"]},
        {"keys": [ALICE], "unknown": 1},
    ],
)
def test_invalid_configs(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ApiKeyConfig.model_validate(config)


def test_two_routes_share_one_counter_family() -> None:
    registry = CollectorRegistry()
    config = FACTORY.config_model.model_validate({"keys": [ALICE]})
    first = FACTORY(config, BuildContext("a", "c", registry))
    second = FACTORY(config, BuildContext("b", "c", registry))
    run(first, make_ctx())
    run(second, make_ctx({"x-api-key": DEMO_KEY}))
    sample = registry.get_sample_value
    assert (
        sample(
            "turnout_filter_decisions_total", {"filter": "auth_apikey", "route": "a", "decision": "missing"}
        )
        == 1
    )
    assert (
        sample("turnout_filter_decisions_total", {"filter": "auth_apikey", "route": "b", "decision": "allow"})
        == 1
    )


def test_a_request_authenticated_earlier_passes_untouched() -> None:
    filter_, registry = build({"keys": [ALICE]})
    ctx = make_ctx({"x-api-key": "not-checked"})
    ctx.principal = Principal("from-jwt")
    assert run(filter_, ctx) is None
    assert ctx.principal.id == "from-jwt"
    assert ctx.headers == {}  # never forwarded
    assert decisions(registry, "already_authenticated") == 1

"""authz: the allow/deny matrix, per-model rules, TLS subjects, and the shared metric family."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, Gauge

from gateway.core.context import Principal, RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins._metrics import counter
from plugins.authz import FACTORY

ALICE = Principal("alice", "acme", frozenset({"infer", "read"}), "gold", frozenset({"analyst"}))
BOB = Principal("bob", "globex", frozenset({"read"}), None, frozenset())


def build(config: dict[str, Any], registry: CollectorRegistry | None = None, route: str = "r1") -> Filter:
    model = FACTORY.config_model.model_validate(config)
    return FACTORY(model, BuildContext(route, "c1", registry or CollectorRegistry()))


def check(
    filter_: Filter, principal: Principal | None, model: str | None = None, tls_subject: str | None = None
) -> Response | None:
    ctx = RequestContext("POST", "/", "", {}, "127.0.0.1", time.monotonic())
    ctx.principal, ctx.model, ctx.tls_subject = principal, model, tls_subject
    result = filter_.on_request(ctx)
    assert result is None or isinstance(result, Response)
    return result


def status(answer: Response | None) -> int:
    return 200 if answer is None else answer.status


def body(answer: Response | None) -> dict[str, Any]:
    assert answer is not None and answer.body is not None
    decoded: dict[str, Any] = orjson.loads(answer.body)
    return decoded


RULES: dict[str, dict[str, Any]] = {
    "any_scopes": {"any_scopes": ["infer", "admin"]},
    "all_scopes": {"all_scopes": ["infer", "read"]},
    "roles": {"roles": ["analyst", "ops"]},
    "tenants": {"tenants": ["acme"]},
    "principals": {"principals": ["alice"]},
    "combined": {"any_scopes": ["read"], "tenants": ["acme"]},
    "empty": {},
}


@pytest.mark.parametrize(
    ("rule", "principal", "expected"),
    [
        ("any_scopes", ALICE, 200),
        ("any_scopes", BOB, 403),
        ("any_scopes", None, 401),
        ("all_scopes", ALICE, 200),
        ("all_scopes", BOB, 403),
        ("roles", ALICE, 200),
        ("roles", BOB, 403),
        ("tenants", ALICE, 200),
        ("tenants", BOB, 403),
        ("principals", ALICE, 200),
        ("principals", BOB, 403),
        ("combined", ALICE, 200),
        ("combined", BOB, 403),  # the scope is there, the tenant is not
        ("empty", BOB, 200),  # no condition: any authenticated caller
        ("empty", None, 401),
    ],
)
def test_allow_deny_matrix(rule: str, principal: Principal | None, expected: int) -> None:
    assert status(check(build(RULES[rule]), principal)) == expected


def test_401_carries_a_challenge() -> None:
    answer = check(build(RULES["roles"]), None)
    assert answer is not None and answer.header("www-authenticate") == 'Bearer realm="turnout"'
    assert body(answer)["code"] == "unauthorized"


def test_403_says_what_is_missing() -> None:
    filter_ = build({"all_scopes": ["infer", "read", "write"], "roles": ["ops"], "tenants": ["acme"]})
    answer = check(filter_, BOB)
    assert answer is not None and answer.status == 403
    assert body(answer) == {
        "error": "access denied: all scopes needed: infer, write; roles needed: ops; tenant not allowed",
        "code": "forbidden",
        "missing": {"all_scopes": ["infer", "write"], "roles": ["ops"]},
        "refused": ["tenant"],
    }


def test_model_rules_add_to_the_route_rule_and_unlisted_models_are_refused() -> None:
    filter_ = build({"any_scopes": ["read"], "models": {"risk": {"roles": ["analyst"]}, "fraud": {}}})
    assert status(check(filter_, ALICE, "risk")) == 200
    answer = check(filter_, BOB, "risk")
    assert status(answer) == 403 and body(answer)["missing"] == {"roles": ["analyst"]}
    assert status(check(filter_, BOB, "fraud")) == 200
    assert status(check(filter_, BOB, "churn")) == 403  # not listed: deny by default
    assert status(check(filter_, None, "churn")) == 401
    assert status(check(filter_, BOB, None)) == 403
    route_rule_fails = Principal("carol", roles=frozenset({"analyst"}))
    assert body(check(filter_, route_rule_fails, "risk"))["missing"] == {"any_scopes": ["read"]}


def test_star_covers_unlisted_models() -> None:
    filter_ = build({"models": {"risk": {"roles": ["analyst"]}, "*": {"any_scopes": ["read"]}}})
    assert status(check(filter_, BOB, "churn")) == 200
    assert status(check(filter_, BOB, "risk")) == 403
    assert status(check(filter_, Principal("dave"), "churn")) == 403


def test_tls_subjects_identify_callers_without_a_principal() -> None:
    filter_ = build({"tls_subjects": ["CN=batch-scorer,O=acme"]})
    assert status(check(filter_, None, tls_subject="CN=batch-scorer,O=acme")) == 200
    answer = check(filter_, None, tls_subject="CN=intruder")
    assert status(answer) == 403 and body(answer)["refused"] == ["tls_subject"]
    assert status(check(filter_, ALICE)) == 403  # a principal is no client certificate


def test_tls_subjects_with_principal_conditions_need_both() -> None:
    filter_ = build({"tls_subjects": ["CN=gw"], "tenants": ["acme"]})
    assert status(check(filter_, ALICE, tls_subject="CN=gw")) == 200
    assert status(check(filter_, None, tls_subject="CN=gw")) == 401
    assert status(check(filter_, BOB, tls_subject="CN=gw")) == 403


def test_decisions_are_counted_per_route_in_one_family() -> None:
    registry = CollectorRegistry()
    first = build(RULES["tenants"], registry, route="a")
    second = build(RULES["tenants"], registry, route="b")
    check(first, ALICE)
    check(first, BOB)
    check(second, None)

    def count(route: str, decision: str) -> float | None:
        labels = {"filter": "authz", "route": route, "decision": decision}
        return registry.get_sample_value("turnout_filter_decisions_total", labels)

    assert (count("a", "allow"), count("a", "forbidden"), count("b", "unauthenticated")) == (1, 1, 1)
    assert count("b", "allow") == 0


def test_metric_helper_refuses_a_clashing_family() -> None:
    registry = CollectorRegistry()
    Gauge("turnout_clash", "a gauge", registry=registry)
    with pytest.raises(ValueError, match="another type or other labels"):
        counter(registry, "turnout_clash", "a counter", ["x"])
    first = counter(registry, "turnout_thing_total", "doc", ["x"])
    assert counter(registry, "turnout_thing", "doc", ["x"]) is first
    with pytest.raises(ValueError, match="another type or other labels"):
        counter(registry, "turnout_thing", "doc", ["y"])

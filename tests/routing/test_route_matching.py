from __future__ import annotations

from typing import Any

import pytest

from routing.router import HeaderMatch, Router, RouteRule, normalize_host, rewrite_prefix


def route(name: str, **conditions: Any) -> RouteRule[str]:
    return RouteRule(name=name, payload=f"payload-{name}", **conditions)


def names(router: Router[str], method: str, path: str, host: str = "gw", **headers: str) -> str | None:
    found = router.match(method, path, host, headers)
    return found.rule.name if found is not None else None


def test_catch_all_prefix_matches_every_path_and_carries_payload() -> None:
    router = Router([route("all", prefix="/")])
    found = router.match("GET", "/anything/at/all", "gw", {})
    assert found is not None
    assert found.payload == "payload-all"
    assert found.rule.name == "all"


def test_exact_path_does_not_match_longer_paths() -> None:
    router = Router([route("exact", path="/v2/health/ready")])
    assert names(router, "GET", "/v2/health/ready") == "exact"
    assert names(router, "GET", "/v2/health/ready/x") is None
    assert names(router, "GET", "/v2/health") is None


def test_prefix_is_a_plain_string_prefix() -> None:
    router = Router([route("api", prefix="/api/")])
    assert names(router, "GET", "/api/x") == "api"
    assert names(router, "GET", "/api") is None
    assert names(router, "GET", "/apix/") is None


def test_regex_is_searched_in_the_path_and_anchors_make_it_whole() -> None:
    router = Router([route("anchored", regex=r"^/items/\d+$"), route("anywhere", regex=r"/items/\d+")])
    assert names(router, "GET", "/items/42") == "anchored"
    assert names(router, "GET", "/items/42/more") == "anywhere"
    assert names(router, "GET", "/x/items/42") == "anywhere"
    assert names(router, "GET", "/items/x") is None


def test_rule_without_path_condition_matches_any_path() -> None:
    router = Router([route("posts", methods=frozenset({"POST"}))])
    assert names(router, "POST", "/whatever") == "posts"
    assert names(router, "GET", "/whatever") is None


def test_first_matching_rule_wins_in_order() -> None:
    router = Router([route("specific", prefix="/v2/models/a"), route("general", prefix="/")])
    assert names(router, "GET", "/v2/models/a/infer") == "specific"
    assert names(router, "GET", "/v2/models/b/infer") == "general"
    reversed_router = Router([route("general", prefix="/"), route("specific", prefix="/v2/models/a")])
    assert names(reversed_router, "GET", "/v2/models/a/infer") == "general"


def test_methods_are_normalized_in_the_rule_and_case_sensitive_on_the_wire() -> None:
    router = Router([route("m", prefix="/", methods=frozenset({"get", "Post"}))])
    assert names(router, "GET", "/") == "m"
    assert names(router, "POST", "/") == "m"
    assert names(router, "DELETE", "/") is None
    assert names(router, "get", "/") is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.com", "exact"),
        ("API.Example.COM:8443", "exact"),
        ("api.example.com.", "exact"),
        ("a.models.example.com", "wild"),
        ("a.b.models.example.com:80", "wild"),
        ("models.example.com", None),
        ("other.com", None),
    ],
)
def test_host_exact_and_wildcard(host: str, expected: str | None) -> None:
    router = Router([route("exact", host="api.example.com"), route("wild", host="*.Models.example.com")])
    assert names(router, "GET", "/", host=host) == expected


def test_normalize_host_handles_ipv6_and_ports() -> None:
    assert normalize_host("[::1]:8080") == "[::1]"
    assert normalize_host("Example.com") == "example.com"
    assert normalize_host("example.com:443") == "example.com"


def test_header_match_kinds() -> None:
    router = Router(
        [
            route("exact", headers=(HeaderMatch("x-tier", "exact", "gold"),)),
            route("regex", headers=(HeaderMatch("x-user", "regex", r"^u-\d+$"),)),
            route("present", headers=(HeaderMatch("x-canary", "present"),)),
            route("absent", headers=(HeaderMatch("authorization", "absent"),)),
        ]
    )
    assert names(router, "GET", "/", **{"x-tier": "gold"}) == "exact"
    assert names(router, "GET", "/", **{"x-tier": "silver", "x-user": "u-12"}) == "regex"
    assert names(router, "GET", "/", **{"x-user": "u-12x", "x-canary": ""}) == "present"
    assert names(router, "GET", "/") == "absent"
    assert names(router, "GET", "/", authorization="Bearer t") is None


def test_all_conditions_of_a_rule_must_hold() -> None:
    router = Router(
        [
            route(
                "strict",
                prefix="/v2/",
                methods=frozenset({"POST"}),
                host="gw.local",
                headers=(HeaderMatch("x-k", "exact", "v"),),
                model="fraud",
            )
        ]
    )
    ok = {"x-k": "v"}
    assert names(router, "POST", "/v2/models/fraud/infer", "gw.local", **ok) == "strict"
    assert names(router, "GET", "/v2/models/fraud/infer", "gw.local", **ok) is None
    assert names(router, "POST", "/v2/models/fraud/infer", "other", **ok) is None
    assert names(router, "POST", "/v2/models/fraud/infer", "gw.local") is None
    assert names(router, "POST", "/v2/models/other/infer", "gw.local", **ok) is None


def test_model_and_version_conditions() -> None:
    router = Router([route("v2", model="fraud", version="2"), route("any-version", model="fraud")])
    assert names(router, "POST", "/v2/models/fraud/versions/2/infer") == "v2"
    assert names(router, "POST", "/v2/models/fraud/versions/1/infer") == "any-version"
    assert names(router, "POST", "/v1/models/fraud/versions/2:predict") == "v2"
    assert names(router, "POST", "/v1/models/fraud:predict") == "any-version"
    assert names(router, "POST", "/v2/models/other/infer") is None


def test_match_reports_model_and_version_from_the_path() -> None:
    router = Router([route("all", prefix="/")])
    found = router.match("POST", "/v2/models/resnet/versions/7/infer", "gw", {})
    assert found is not None
    assert (found.model, found.version) == ("resnet", "7")
    plain = router.match("GET", "/metrics", "gw", {})
    assert plain is not None
    assert (plain.model, plain.version) == (None, None)


def test_no_match_returns_none() -> None:
    assert Router([route("a", path="/a")]).match("GET", "/b", "gw", {}) is None
    assert Router[str]([]).match("GET", "/", "gw", {}) is None


@pytest.mark.parametrize(
    ("prefix", "replacement", "path", "expected"),
    [
        ("/api", "/", "/api/infer", "/infer"),
        ("/api/", "/", "/api/infer", "/infer"),
        ("/api", "/v2", "/api/models/x", "/v2/models/x"),
        ("/api", "", "/api", "/"),
        ("/old/", "/new/", "/old/a/b", "/new/a/b"),
        ("/api", "internal", "/api/x", "/internal/x"),
    ],
)
def test_rewrite_prefix(prefix: str, replacement: str, path: str, expected: str) -> None:
    found = Router([route("r", prefix=prefix)]).match("GET", path, "gw", {})
    assert found is not None
    assert rewrite_prefix(found, replacement) == expected


def test_rewrite_of_exact_path_replaces_it_and_regex_refuses() -> None:
    exact = Router([route("e", path="/predict")]).match("POST", "/predict", "gw", {})
    assert exact is not None
    assert rewrite_prefix(exact, "/v2/models/m/infer") == "/v2/models/m/infer"
    regex = Router([route("r", regex="/p.*")]).match("POST", "/predict", "gw", {})
    assert regex is not None
    with pytest.raises(ValueError, match="prefix"):
        rewrite_prefix(regex, "/x")


def test_invalid_rules_are_refused_at_build() -> None:
    with pytest.raises(ValueError, match="at most one"):
        route("two", path="/a", prefix="/a")
    with pytest.raises(ValueError, match="starts with"):
        route("rel", prefix="api")
    with pytest.raises(ValueError, match="invalid regex"):
        Router([route("bad", regex="(")])
    with pytest.raises(ValueError, match="lower-case"):
        HeaderMatch("X-Upper")
    with pytest.raises(ValueError, match="needs a value"):
        HeaderMatch("x-a", "exact")
    with pytest.raises(ValueError, match="unique"):
        Router([route("a", prefix="/"), route("a", prefix="/x")])

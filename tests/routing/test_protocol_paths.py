"""Each upstream protocol decides how a path names a model, so one protocol's paths are never read
in another's layout (OpenAI's `/v1/models/gpt-a` is not a KServe v1 path)."""

from __future__ import annotations

import pytest

from routing.model_path import path_parser
from routing.router import Router, RouteRule


@pytest.mark.parametrize(
    ("protocol", "path", "expected"),
    [
        ("http", "/v1/models/gpt-a", ("gpt-a", None)),
        ("http", "/v2/models/bc/infer", ("bc", None)),
        ("oip_v2", "/v2/models/bc/versions/2/infer", ("bc", "2")),
        ("oip_v2", "/v1/models/bc:predict", (None, None)),
        ("kserve_v1", "/v1/models/bc:predict", ("bc", None)),
        ("kserve_v1", "/v2/models/bc/infer", (None, None)),
        ("openai", "/v1/models/gpt-a", (None, None)),
        ("openai", "/v2/models/bc/infer", (None, None)),
    ],
)
def test_each_protocol_reads_only_its_own_layout(
    protocol: str, path: str, expected: tuple[str | None, str | None]
) -> None:
    assert path_parser(protocol)(path) == expected


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="grpc"):
        path_parser("grpc")


def test_a_model_rule_on_an_openai_route_never_matches_a_kserve_reading_of_its_path() -> None:
    router = Router(
        [
            RouteRule(name="llm", payload="llm", prefix="/v1/", model="gpt-a", protocol="openai"),
            RouteRule(name="kserve", payload="kserve", prefix="/v1/", model="gpt-a", protocol="kserve_v1"),
        ]
    )
    pending = router.match("GET", "/v1/models/gpt-a", "gw", {})
    assert pending is not None and pending.pending and pending.rule.name == "llm", (
        "the openai rule reads its model from the body, not from the path"
    )
    assert pending.model is None
    found = router.match("GET", "/v1/models/gpt-a", "gw", {}, body_model=None, body_read=True)
    assert found is not None and found.rule.name == "kserve", (
        "the openai rule must not read a model from the path"
    )
    assert (found.model, found.version) == ("gpt-a", None)
    openai_only = Router([RouteRule(name="llm", payload="llm", prefix="/v1/", protocol="openai")])
    found = openai_only.match("GET", "/v1/models/gpt-a", "gw", {})
    assert found is not None and found.model is None


def test_mixed_protocols_read_the_path_per_rule() -> None:
    router = Router(
        [
            RouteRule(name="v2", payload="v2", prefix="/", model="bc", protocol="oip_v2"),
            RouteRule(name="any", payload="any", prefix="/", protocol="http"),
        ]
    )
    v1 = router.match("POST", "/v1/models/bc:predict", "gw", {})
    assert v1 is not None and v1.rule.name == "any" and v1.model == "bc"
    v2 = router.match("POST", "/v2/models/bc/infer", "gw", {})
    assert v2 is not None and v2.rule.name == "v2" and v2.model == "bc"

"""The balancer field: a bare type name, or a mapping with a type and options."""

from __future__ import annotations

import pytest

from gateway.config import (
    AnyBalancer,
    ClusterConfig,
    ConfigError,
    ConsistentHashBalancer,
    LeastQueueBalancer,
    LeastRequestBalancer,
    PeakEwmaBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    WeightedRoundRobinBalancer,
    load_config_text,
)

TEMPLATE = """\
clusters:
  up:
    endpoints: [127.0.0.1:9101, 127.0.0.1:9102]
    balancer: {balancer}
routes:
  - backend: {{cluster: up}}
"""


def balancer_of(text: str) -> AnyBalancer:
    return load_config_text(TEMPLATE.format(balancer=text), "x.yaml", env={}).clusters["up"].balancer


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(TEMPLATE.format(balancer=text), "x.yaml", env={})
    return caught.value.errors


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("round_robin", RoundRobinBalancer),
        ("weighted_round_robin", WeightedRoundRobinBalancer),
        ("random", RandomBalancer),
        ("least_request", LeastRequestBalancer),
        ("peak_ewma", PeakEwmaBalancer),
        ("least_queue", LeastQueueBalancer),
    ],
)
def test_bare_name_and_mapping_give_the_same_model(name: str, model: type) -> None:
    bare, mapping = balancer_of(name), balancer_of(f"{{type: {name}}}")
    assert isinstance(bare, model)
    assert bare == mapping == model()


def test_default_is_round_robin() -> None:
    assert ClusterConfig.model_validate({"endpoints": ["127.0.0.1:1"]}).balancer == RoundRobinBalancer()


def test_options_in_the_mapping_form() -> None:
    assert balancer_of("{type: least_request, choice_count: 3}") == LeastRequestBalancer(choice_count=3)
    assert balancer_of("{type: peak_ewma, decay: 30s}") == PeakEwmaBalancer(decay=30.0)
    hashed = balancer_of("{type: consistent_hash, hash_on: 'header:X-User-Id', method: maglev}")
    assert hashed == ConsistentHashBalancer(hash_on="header:x-user-id", method="maglev")
    by_client = balancer_of("{type: consistent_hash, hash_on: client_ip}")
    assert isinstance(by_client, ConsistentHashBalancer)
    assert (by_client.method, by_client.ring_size) == ("ring", 1024)


def test_unknown_type_suggests_the_closest() -> None:
    assert errors_of("roun_robin") == [
        "x.yaml:4: clusters.up.balancer: unknown type 'roun_robin' (did you mean 'round_robin'?)"
    ]
    assert errors_of("{type: leastrequest}") == [
        "x.yaml:4: clusters.up.balancer.type: unknown type 'leastrequest' (did you mean 'least_request'?)"
    ]
    (error,) = errors_of("banana")
    assert error.startswith("x.yaml:4: clusters.up.balancer: unknown type 'banana' (one of: round_robin, ")


def test_option_errors_point_inside_the_mapping() -> None:
    assert errors_of("{type: least_request, choice_count: 1, choices: 2}") == [
        "x.yaml:4: clusters.up.balancer.choice_count: must be at least 2, got 1",
        "x.yaml:4: clusters.up.balancer.choices: unknown field (did you mean 'choice_count'?)",
    ]
    assert errors_of("{choice_count: 3}") == [
        "x.yaml:4: clusters.up.balancer: needs a 'type' saying which kind it is"
    ]


def test_consistent_hash_needs_a_key() -> None:
    assert errors_of("consistent_hash") == [
        "x.yaml:4: clusters.up.balancer: required field 'hash_on' is missing"
    ]
    assert errors_of("{type: consistent_hash}") == [
        "x.yaml:4: clusters.up.balancer.hash_on: required field is missing"
    ]
    assert errors_of("{type: consistent_hash, hash_on: 'body:x'}") == [
        "x.yaml:4: clusters.up.balancer.hash_on: cannot hash on 'body:x': use header:NAME, cookie:NAME, "
        "query:NAME or client_ip"
    ]


def test_ring_size_only_for_rings() -> None:
    assert errors_of("{type: consistent_hash, hash_on: client_ip, method: maglev, ring_size: 10}") == [
        "x.yaml:4: clusters.up.balancer.ring_size: applies only to method: ring (maglev uses its own prime "
        "table size)"
    ]

"""Properties of the config loader over arbitrary and mutated configs.

Whatever the file holds, loading it either gives a config or raises ConfigError with one located line
per problem: never another exception (a traceback for the operator). And a config that loads builds:
the gateway's own `build_runtime` never fails on a config the loader accepted, which is the promise
`turnout validate` makes about `turnout run`.

Mutations start from the example configs (every section and most filters appear in them) and change
them the ways people do: a key deleted, a value replaced with one of another type or a suspicious
one, a known key added in the wrong place, a list item repeated.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.config import ConfigError, GatewayConfig
from gateway.config.yaml_tree import read_yaml
from gateway.loading import load_gateway_config_text
from gateway.observability import GatewayMetrics
from gateway.runtime import build_runtime
from tests.support.processes import ROOT

EXAMPLES = ROOT / "config" / "examples"
FILENAME = "fuzzed.yaml"
# Each example builds a whole gateway (a few to tens of milliseconds); these counts keep the file
# within seconds on a shared 2-core machine while reaching every section of the examples many times.
TEXT_EXAMPLES = 300
MUTATION_EXAMPLES = 200
TEXT_SETTINGS = settings(max_examples=TEXT_EXAMPLES, deadline=None, database=None)
MUTATION_SETTINGS = settings(
    max_examples=MUTATION_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LOCATED = re.compile(rf"^{re.escape(FILENAME)}:\d+: \S")

# Values that have broken config loaders: other types, empties, extremes, unresolved references,
# URLs without a scheme, files that are not there, import paths that lead nowhere.
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 65536, 10**30, 1e308, float("inf"), float("nan"), -0.0,
    "", " ", "x", "memory", "redis", "require", "ring", "${UNSET_TURNOUT_VAR}", "${UNSET_TURNOUT_VAR:-7}",
    "1ms", "-1s", "0s", "5/s", "0/s", "64KiB", "*", "/", "//", "/..", "127.0.0.1:9", "[::1]:9", "host:0",
    "localhost:6379", "redis://127.0.0.1:1/0", "redis://h:99999", "http://", "no-such-file.pem",
    "tests.support.broken_plugins:RAISING", "tests.support.plugins:UPSTREAM_AUTH", "no.such.module:F",
    [], {}, [1, "a"], {"a": 1}, {"backend": "redis"}, [{"key": "client_ip", "rate": "5/s"}],
]  # fmt: skip
# Keys from across the schema, to be added where they may not belong.
KNOWN_KEYS = [
    "backend", "redis_url", "url", "keys_file", "keys", "tls", "cert", "key", "client_ca", "client_cert",
    "plugin", "config", "filters", "limits", "sqlite_path", "path", "enabled", "experiment", "feedback",
    "cluster", "health", "discovery", "file", "rate_limit", "cache", "auth_apikey", "auth_jwt", "authz",
    "batching", "validate", "transform", "cors", "retry", "timeout", "weight", "endpoints", "balancer",
    "type", "state", "access_log", "prefix", "regex", "on", "<<",
]  # fmt: skip

# Filter entries and state sections whose problems only building finds (a Redis backend with no Redis,
# a keys file that is not there, a plugin that raises), with buildable ones beside them.
FILTER_ENTRIES: list[Any] = [
    {"rate_limit": {"limits": [{"key": "client_ip", "rate": "5/s"}], "backend": "redis"}},
    {"rate_limit": {"limits": [{"key": "principal", "rate": "1/s", "cost": "rows"}]}},
    {"cache": {"backend": "redis"}},
    {"cache": {"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"}},
    {"cache": {}},
    {"auth_apikey": {"keys_file": "no-such-keys.yaml"}},
    {"batching": {"max_batch_size": 4}},
    {"validate": {"oip_v2": True}},
    {"plugin": "tests.support.broken_plugins:RAISING"},
    {"plugin": "tests.support.broken_plugins:NOT_A_FILTER"},
    {"plugin": "tests.support.plugins:UPSTREAM_AUTH", "config": {"api_token": "t"}},
    {"plugin": "tests.support.no_such_plugin:F"},
]
STATES: list[Any] = [
    {"backend": "redis", "url": "redis://127.0.0.1:1/0"},
    {"backend": "memory", "sqlite_path": "/dev/null/events.db"},
    {"backend": "memory"},
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from([v for v in ODD_VALUES if not isinstance(v, list | dict)]),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10)), children, max_size=4),
    ),
    max_leaves=25,
)


def _example(name: str) -> Any:
    """An example's values as the gateway reads them: yaml.safe_load would turn the key `on:` (of
    a retry section) into the boolean true."""
    document = read_yaml((EXAMPLES / name).read_text(), {})
    assert not document.issues, document.issues
    return document.data


EXAMPLE_DATA = {path.name: _example(path.name) for path in sorted(EXAMPLES.glob("*.yaml"))}


def _load(text: str) -> GatewayConfig | None:
    """The loaded config, or None after checking that the refusal is a proper ConfigError."""
    try:
        return load_gateway_config_text(text, FILENAME, EXAMPLES, env={})
    except ConfigError as err:
        assert err.errors, "a ConfigError must say what is wrong"
        for line in err.errors:
            assert "\n" not in line and LOCATED.match(line), line
        return None


def _builds(config: GatewayConfig) -> None:
    """What `turnout run` builds from a loaded config; raises if the loader let through too much."""
    metrics = GatewayMetrics(CollectorRegistry(auto_describe=True))
    build_runtime(config, metrics, None, previous=None, base_dir=EXAMPLES)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a YAML tree (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return found
    for key, child in items:
        found.append((*path, key))
        found.extend(_places(child, (*path, key)))
    return found


def _parent(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def _fresh(value: Any) -> Any:
    """A copy of a drawn value: ODD_VALUES holds lists and dicts that a later mutation of the tree
    would otherwise change in place, changing what the next examples draw from (hypothesis then
    fails the test as flaky)."""
    return copy.deepcopy(value)


def _mutate(tree: Any, data: st.DataObject) -> None:
    routes = tree.get("routes") if isinstance(tree, dict) else None
    if isinstance(routes, list) and routes and data.draw(st.booleans(), label="build-level"):
        route = data.draw(st.sampled_from(routes), label="route")
        if isinstance(route, dict):
            entry = copy.deepcopy(data.draw(st.sampled_from(FILTER_ENTRIES), label="filter"))
            filters = route.get("filters")
            route["filters"] = [*filters, entry] if isinstance(filters, list) else [entry]
        tree["state"] = copy.deepcopy(data.draw(st.sampled_from(STATES), label="state"))
        return
    places = _places(tree)
    path = data.draw(st.sampled_from(places), label="place")
    parent, key = _parent(tree, path), path[-1]
    action = data.draw(st.sampled_from(["delete", "replace", "add_key", "repeat"]), label="action")
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = _fresh(data.draw(st.one_of(st.sampled_from(ODD_VALUES), documents), label="value"))
    elif action == "add_key" and isinstance(parent[key], dict):
        new_key = data.draw(st.sampled_from(KNOWN_KEYS), label="key")
        parent[key][new_key] = _fresh(
            data.draw(st.one_of(st.sampled_from(ODD_VALUES), documents), label="value")
        )
    elif action == "repeat" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    else:  # the action does not apply here: a plain replacement keeps the example useful
        parent[key] = _fresh(data.draw(st.sampled_from(ODD_VALUES), label="value"))


@pytest.mark.parametrize("name", sorted(EXAMPLE_DATA))
def test_every_example_loads_and_builds(name: str) -> None:
    config = _load((EXAMPLES / name).read_text())
    assert config is not None, name
    _builds(config)


@TEXT_SETTINGS
@given(st.text(max_size=300))
def test_any_text_is_a_config_or_a_located_config_error(text: str) -> None:
    config = _load(text)
    if config is not None:
        _builds(config)


@TEXT_SETTINGS
@given(documents)
def test_any_yaml_document_is_a_config_or_a_located_config_error(document: Any) -> None:
    config = _load(yaml.safe_dump(document))
    if config is not None:
        _builds(config)


@MUTATION_SETTINGS
@given(st.sampled_from(sorted(EXAMPLE_DATA)), st.integers(1, 3), st.data())
def test_a_mutated_example_that_loads_also_builds(name: str, mutations: int, data: st.DataObject) -> None:
    tree = copy.deepcopy(EXAMPLE_DATA[name])
    for _ in range(mutations):
        if not isinstance(tree, dict | list) or not _places(tree):
            break
        _mutate(tree, data)
    config = _load(yaml.safe_dump(tree, sort_keys=False))
    if config is not None:
        _builds(config)


def test_the_mutations_reach_the_build_step_and_its_refusals() -> None:
    """The properties above would hold vacuously if no mutation ever loaded, or if the preflight never
    refused one: these two mutations of the quickstart, one of each, show both outcomes happen."""
    tree = copy.deepcopy(EXAMPLE_DATA["quickstart.yaml"])
    tree["routes"][0]["filters"] = [{"cache": {"ttl": "5s"}}]
    config = _load(yaml.safe_dump(tree, sort_keys=False))
    assert config is not None
    _builds(config)
    tree["routes"][0]["filters"] = [{"cache": {"backend": "redis"}}]
    with pytest.raises(ConfigError, match=r"routes\[0\]\.filters\[0\]\.cache: backend redis needs a Redis"):
        load_gateway_config_text(yaml.safe_dump(tree, sort_keys=False), FILENAME, Path(EXAMPLES), env={})

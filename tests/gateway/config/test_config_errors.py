"""Error lines: the exact format, the line of the offending value, suggestions, and every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, load_config_text


def errors_of(text: str, filename: str = "x.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, filename, env={})
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


UNKNOWN_CLUSTER = """\
# Fraud scoring: two model versions, one route.
listen:
  port: 8080
clusters:
  fraud-v1:
    endpoints: [127.0.0.1:9101]
  fraud-v2:
    endpoints: [127.0.0.1:9102]
routes:
  - name: fraud
    match:
      model: fraud
    backend:
      cluster: fraud-v3
"""


def test_unknown_cluster_exact_format() -> None:
    assert errors_of(UNKNOWN_CLUSTER, "config/x.yaml") == [
        "config/x.yaml:14: routes[0].backend.cluster: unknown cluster 'fraud-v3' (known: fraud-v1, fraud-v2)"
    ]


def test_file_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "x.yaml").write_text(UNKNOWN_CLUSTER, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("config/x.yaml", env={})
    assert caught.value.errors[0].startswith("config/x.yaml:14: routes[0].backend.cluster: unknown cluster")


def test_unknown_cluster_suggests_a_clear_match() -> None:
    text = UNKNOWN_CLUSTER.replace("fraud-v3", "fraud_v2").replace("fraud-v1", "scoring")
    assert errors_of(text) == [
        "x.yaml:14: routes[0].backend.cluster: unknown cluster 'fraud_v2' "
        "(did you mean 'fraud-v2'? known: fraud-v2, scoring)"
    ]


UNKNOWN_FIELD = """\
listen:
  port: 8080
clusters:
  up:
    endpoints:
      - 127.0.0.1:9101
    balancr: round_robin
routes:
  - backend: {cluster: up}
"""


def test_unknown_field_suggests_the_closest_key() -> None:
    assert errors_of(UNKNOWN_FIELD, "config/x.yaml") == [
        "config/x.yaml:7: clusters.up.balancr: unknown field (did you mean 'balancer'?)"
    ]


def test_unknown_field_without_close_match_lists_the_valid_ones() -> None:
    assert errors_of(
        "listen:\n  zzz: 1\n" + UNKNOWN_FIELD[len("listen:\n  port: 8080\n") :].replace("balancr", "balancer")
    ) == [
        "x.yaml:2: listen.zzz: unknown field (valid fields: host, port, max_header_bytes, max_headers, "
        "max_body_bytes, header_timeout, idle_timeout, drain_timeout, backlog, tls, escaped_slashes, "
        "grpc_port, grpc_transport)"
    ]


def test_unknown_top_level_section() -> None:
    text = UNKNOWN_FIELD.replace("balancr", "balancer").replace("listen:", "listne:")
    assert errors_of(text) == ["x.yaml:1: listne: unknown field (did you mean 'listen'?)"]


def test_bad_regex_names_its_line() -> None:
    text = """\
clusters:
  up: {endpoints: [127.0.0.1:9101]}
routes:
  - match:
      regex: "([a-z"
    backend: {cluster: up}
  - match:
      headers:
        x-user: {regex: "*bad"}
    backend: {cluster: up}
"""
    errors = errors_of(text)
    assert len(errors) == 2
    assert errors[0].startswith("x.yaml:5: routes[0].match.regex: invalid regular expression '([a-z': ")
    assert errors[1].startswith("x.yaml:9: routes[1].match.headers.x-user.regex: invalid regular expression")


def test_duplicate_route_names() -> None:
    text = """\
clusters:
  up: {endpoints: [127.0.0.1:9101]}
routes:
  - name: api
    backend: {cluster: up}
  - name: route-2
    backend: {cluster: up}
  - backend: {cluster: up}
  - name: api
    backend: {cluster: up}
"""
    assert errors_of(text) == [
        "x.yaml:8: routes[2].name: duplicate route name 'route-2' (also routes[1])",
        "x.yaml:9: routes[3].name: duplicate route name 'api' (also routes[0])",
    ]


def test_all_errors_are_reported_at_once_in_file_order() -> None:
    text = """\
listen:
  port: 70000
  backlog: many
admin:
  host: 0.0.0.0
clusters:
  up:
    protocol: grpc
    endpoints: ["127.0.0.1:9101", "localhost"]
    health: {interval: 0s, jitter: 2}
routes:
  - backend: {}
"""
    assert errors_of(text) == [
        "x.yaml:2: listen.port: must be at most 65535, got 70000",
        "x.yaml:3: listen.backlog: expected a whole number, got 'many'",
        "x.yaml:4: admin.token: required when the admin listener binds 0.0.0.0, which other machines can "
        "reach: set a bearer token, e.g. token: ${TURNOUT_ADMIN_TOKEN}",
        "x.yaml:8: clusters.up.protocol: must be one of http, oip_v2, kserve_v1, openai; got 'grpc'",
        "x.yaml:9: clusters.up.endpoints[1]: invalid address 'localhost': expected host:port, "
        "like 127.0.0.1:9000",
        "x.yaml:10: clusters.up.health.interval: must be longer than zero, like 1s or 250ms",
        "x.yaml:10: clusters.up.health.jitter: must be at most 1, got 2",
        "x.yaml:12: routes[0].backend: give exactly one of cluster, experiment or feedback",
    ]


def test_missing_sections() -> None:
    assert errors_of("listen: {port: 8080}\n") == [
        "x.yaml:1: clusters: required field is missing",
        "x.yaml:1: routes: required field is missing",
    ]


def test_empty_sections() -> None:
    assert errors_of("clusters: {}\nroutes: []\n") == [
        "x.yaml:1: clusters: needs at least 1 entry",
        "x.yaml:2: routes: needs at least 1 item",
    ]


def test_wrong_kinds_are_named_in_yaml_terms() -> None:
    text = """\
listen: [8080]
access_log: {enabled: maybe}
clusters:
  up: {endpoints: 127.0.0.1:9101}
routes:
  - backend: {cluster: up}
    request_headers: {add: {x-flag: yes}}
"""
    assert errors_of(text) == [
        "x.yaml:1: listen: expected a mapping (key: value lines), got a list",
        "x.yaml:2: access_log.enabled: expected true or false, got 'maybe'",
        "x.yaml:4: clusters.up.endpoints: expected a list, got '127.0.0.1:9101'",
        "x.yaml:7: routes[0].request_headers.add.x-flag: expected text, got true (YAML reads "
        "yes/no/on/off/true/false as booleans: put it in quotes to mean the text)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("clusters: {up: [\n", "x.yaml:2: invalid YAML: "),
        ("clusters:\n  up: x\n bad: y\n", "x.yaml:3: invalid YAML: "),
        ("clusters:\n\tup: x\n", "x.yaml:2: invalid YAML: "),
        ("a: *nowhere\n", "x.yaml:1: invalid YAML: found undefined alias"),
        (
            "a: 1\n---\nb: 2\n",
            "x.yaml:2: invalid YAML: expected a single document in the stream, but found another document",
        ),
    ],
)
def test_yaml_syntax_errors_name_the_line(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert len(errors) == 1
    assert errors[0].startswith(expected)
    assert "Traceback" not in errors[0]


def test_syntax_error_is_not_chained_to_a_yaml_exception() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("a: [\n", "x.yaml", env={})
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "- listen\n- clusters\n",
            "x.yaml:1: the top level must be a mapping of sections (listen, admin, "
            "access_log, tracing, state, clusters, experiments, routes, processes, mesh), not a list",
        ),
        (
            "\n\njust text\n",
            "x.yaml:3: the top level must be a mapping of sections (listen, admin, "
            "access_log, tracing, state, clusters, experiments, routes, processes, mesh), not 'just text'",
        ),
        (
            "# only a comment\n",
            "x.yaml:1: the file is empty: expected a mapping with the sections listen, "
            "admin, access_log, tracing, state, clusters, experiments, routes, processes, mesh",
        ),
        (
            "",
            "x.yaml:1: the file is empty: expected a mapping with the sections listen, admin, access_log, "
            "tracing, state, clusters, experiments, routes, processes, mesh",
        ),
    ],
)
def test_top_level_must_be_a_mapping(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.errors == [f"{missing}: cannot read the file: No such file or directory"]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"listen: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_config(binary)
    assert caught.value.errors[0].startswith(f"{binary}: not UTF-8 text")

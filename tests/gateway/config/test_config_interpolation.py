"""${VAR} and ${VAR:-default} in string values, and errors naming the line of an unset variable."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config_text
from gateway.config.interpolation import InterpolationError, interpolate

CONFIG = """\
listen:
  port: ${PORT:-8080}
admin:
  token: ${ADMIN_TOKEN}
clusters:
  up:
    endpoints: ["${UPSTREAM_HOST:-127.0.0.1}:9101"]
routes:
  - backend: {cluster: up}
"""


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:-has spaces: and colons}", {}, "has spaces: and colons"),
        ("${A}", {"A": ""}, ""),
        ("$${A}", {}, "${A}"),
        ("^/v1/$", {}, "^/v1/$"),
        ("cost: $5", {}, "cost: $5"),
        ("no references", {}, "no references"),
    ],
)
def test_interpolate(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_every_unresolved_reference_is_reported() -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate("${A}/${B}/${C:-ok}/${1BAD}/${D", {})
    problems = caught.value.problems
    assert len(problems) == 4
    assert problems[0].startswith("environment variable A is not set and has no default")
    assert problems[1].startswith("environment variable B is not set")
    assert "cannot read ${1BAD}" in problems[2]
    assert "'${' is not closed" in problems[3]


def test_values_come_from_the_given_env() -> None:
    env = {"PORT": "9000", "ADMIN_TOKEN": "s3cret", "UPSTREAM_HOST": "10.1.2.3"}
    config = load_config_text(CONFIG, "x.yaml", env=env)
    assert config.listen.port == 9000  # the text "9000" validates as the port number
    assert config.admin.token == "s3cret"
    assert config.clusters["up"].endpoints[0].address == "10.1.2.3:9101"


def test_defaults_apply_when_unset() -> None:
    config = load_config_text(CONFIG, "x.yaml", env={"ADMIN_TOKEN": "t"})
    assert config.listen.port == 8080
    assert config.clusters["up"].endpoints[0].address == "127.0.0.1:9101"


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "from-os-environ")
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("UPSTREAM_HOST", raising=False)
    assert load_config_text(CONFIG, "x.yaml").admin.token == "from-os-environ"


def test_unset_variable_without_default_names_file_line_and_field() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(CONFIG, "config/x.yaml", env={})
    assert caught.value.errors == [
        "config/x.yaml:4: admin.token: environment variable ADMIN_TOKEN is not set and has no default "
        "(set it, or write ${ADMIN_TOKEN:-value} to give one)"
    ]


def test_an_unset_variable_does_not_also_fail_the_value() -> None:
    text = CONFIG.replace("${PORT:-8080}", "${PORT}")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "x.yaml", env={"ADMIN_TOKEN": "t"})
    # One error about PORT, not a second one saying "${PORT}" is not a number.
    assert caught.value.errors == [
        "x.yaml:2: listen.port: environment variable PORT is not set and has no default "
        "(set it, or write ${PORT:-value} to give one)"
    ]


def test_keys_are_not_interpolated() -> None:
    text = CONFIG.replace("  port: ${PORT:-8080}", "  port: 8081\n  ${EXTRA}: 1")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "x.yaml", env={"ADMIN_TOKEN": "t", "EXTRA": "backlog"})
    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith(
        "x.yaml:3: listen['${EXTRA}']: unknown field (valid fields: host,"
    )


def test_quoted_strings_are_interpolated_and_plain_numbers_left_alone() -> None:
    text = CONFIG.replace("${PORT:-8080}", "8081").replace("token: ${ADMIN_TOKEN}", "token: '${ADMIN_TOKEN}'")
    config = load_config_text(text, "x.yaml", env={"ADMIN_TOKEN": "quoted"})
    assert (config.listen.port, config.admin.token) == (8081, "quoted")

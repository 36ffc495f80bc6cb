"""The load-time preflight and the option checks it relies on, in-process: each problem that would
stop the gateway (or leave it silently doing something else than the file says) is one located
config error line. `tests/security/test_sec_config_cli.py` runs the same cases through the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.loading import load_gateway_config_text

HEAD = """\
listen: {host: 127.0.0.1, port: 18080}
admin: {host: 127.0.0.1, port: 18901}
access_log: {enabled: false}
clusters:
  up: {endpoints: [127.0.0.1:9]}
routes:
  - name: all
    match: {prefix: /}
    backend: {cluster: up}
"""


def _errors(text: str, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_gateway_config_text(text, "gw.yaml", base_dir, env={})
    return caught.value.errors


def _with_filter(options: str) -> str:
    return HEAD + "    filters:\n      - " + options + "\n"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            "rate_limit: {limits: [{key: principal, rate: 1/s}], redis_url: 'redis://127.0.0.1:1/0'}",
            "gw.yaml:11: routes[0].filters[0].rate_limit: redis_url applies only to backend: redis "
            "(this filter uses memory)",
        ),
        (
            "cache: {redis_timeout: 10ms, key_prefix: 'x:'}",
            "gw.yaml:11: routes[0].filters[0].cache: redis_timeout, key_prefix apply only to backend: redis "
            "(this filter uses memory)",
        ),
        (
            "validate: {oip_v2: true, metadata_from: 'http://'}",
            "gw.yaml:11: routes[0].filters[0].validate.metadata_from: metadata_from must be an http:// or "
            "https:// URL with a host, got 'http://'",
        ),
        (
            "auth_jwt: {providers: [{name: p, issuer: i, audiences: [a], jwks_url: 'https://'}]}",
            "gw.yaml:11: routes[0].filters[0].auth_jwt.providers[0]: jwks_url must be an http:// or "
            "https:// URL with a host",
        ),
    ],
)
def test_options_the_gateway_would_ignore_or_never_use_are_refused(
    tmp_path: Path, options: str, error: str
) -> None:
    errors = _errors(_with_filter(options), tmp_path)
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_a_redis_option_with_the_redis_backend_is_accepted(tmp_path: Path) -> None:
    text = _with_filter(
        "rate_limit: {limits: [{key: principal, rate: 1/s}], backend: redis, redis_url: 'redis://127.0.0.1:1/0'}"
    )
    config = load_gateway_config_text(text, "gw.yaml", tmp_path, env={})
    assert config.routes[0].filters[0].config["backend"] == "redis"


def test_a_keys_file_without_keys_is_located(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text("[]\n")
    errors = _errors(_with_filter("auth_apikey: {keys_file: keys.yaml}"), tmp_path)
    assert errors == [
        "gw.yaml:11: routes[0].filters[0].auth_apikey: auth_apikey has no keys: `keys` and `keys_file` are "
        "both empty"
    ]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_an_unreadable_client_ca_is_located_on_its_field(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    text = HEAD.replace(
        "port: 18080}",
        f"port: 18080, tls: {{cert: {cert.name}, key: {key.name}, "
        "client_ca: ca.pem, client_cert: require}}",
    )
    errors = _errors(text, tmp_path)
    assert len(errors) == 1 and errors[0].startswith(
        "gw.yaml:1: listen.tls.client_ca: ca.pem does not load as PEM CA certificates"
    ), errors
    # The same certificate as a CA is fine: the context builds, as `turnout run` would build it.
    config = load_gateway_config_text(text.replace("ca.pem", cert.name), "gw.yaml", tmp_path, env={})
    assert config.listen.tls is not None


def test_an_event_store_that_is_not_sqlite_is_located(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    store.write_text("these are not SQLite pages\n")
    text = (
        HEAD
        + "  - name: fb\n    match: {path: /v1/feedback}\n    backend: {feedback: true}\n"
        + f"state: {{sqlite_path: '{store}'}}\n"
    )
    assert _errors(text, tmp_path) == [
        f"gw.yaml:13: state.sqlite_path: {store} exists and is not an SQLite database"
    ]


def test_an_access_log_that_is_a_directory_is_located(tmp_path: Path) -> None:
    text = HEAD.replace("access_log: {enabled: false}", f"access_log: {{enabled: true, path: '{tmp_path}'}}")
    assert _errors(text, tmp_path) == [f"gw.yaml:3: access_log.path: {tmp_path} is a directory"]


def test_the_build_is_not_tried_when_names_or_options_are_already_wrong(tmp_path: Path) -> None:
    """A route naming an unknown experiment, or a filter with invalid options, gets its own error
    once, not a second, vaguer one from trying to build the gateway from it."""
    text = _with_filter("rate_limit: {limits: [{key: nobody, rate: 1/s}], backend: redis}").replace(
        "backend: {cluster: up}", "backend: {experiment: nope}"
    )
    errors = _errors(text, tmp_path)
    assert len(errors) == 2, errors
    assert "routes[0].backend.experiment: unknown experiment 'nope'" in errors[0]
    assert "routes[0].filters[0].rate_limit.limits[0].key: unknown key 'nobody'" in errors[1]


@pytest.mark.parametrize("filter_name", ["auth_apikey", "auth_jwt"])
def test_a_realm_that_would_split_the_challenge_header_is_refused(tmp_path: Path, filter_name: str) -> None:
    """The realm is written into WWW-Authenticate: a line break in it would add a header of its own."""
    sources = {
        "auth_apikey": "keys: [{sha256: '" + "a" * 64 + "', principal: p}]",
        "auth_jwt": "providers: [{name: p, issuer: i, audiences: [a], jwks_url: 'https://idp.example/jwks'}]",
    }
    options = f'{filter_name}: {{{sources[filter_name]}, realm: "api\\r\\nSet-Cookie: session=x"}}'
    errors = _errors(_with_filter(options), tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"gw.yaml:11: routes[0].filters[0].{filter_name}.realm: invalid header value")


@pytest.mark.parametrize("section", ["request_headers", "response_headers"])
def test_a_route_header_value_with_a_line_break_is_refused(tmp_path: Path, section: str) -> None:
    text = HEAD + f'    {section}: {{add: {{x-team: "ml\\r\\nx-injected: 1"}}}}\n'
    errors = _errors(text, tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"gw.yaml:10: routes[0].{section}.add.x-team: invalid header value"), errors


def test_a_route_header_value_may_be_a_number(tmp_path: Path) -> None:
    config = load_gateway_config_text(
        HEAD + "    request_headers: {add: {x-version: 2}}\n", "gw.yaml", tmp_path, env={}
    )
    assert config.routes[0].request_headers.add == {"x-version": "2"}

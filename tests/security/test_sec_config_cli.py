"""What `turnout validate` accepts, `turnout run` builds: every config that would stop the gateway is
a located config error in both, never a traceback.

Each case is a config that `validate` used to call ok and `run` then crashed on (a filter factory
refusing its options, a plugin that does not import or raises, TLS material or paths that cannot
be opened). Both commands run as real subprocesses, as a user runs them.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import ROOT, free_port

# A CLI that checks a config answers within seconds; this only bounds a child that hangs (a `run`
# that starts serving instead of refusing the file would otherwise never return).
CLI_TIMEOUT_S = 60.0
# One error line: `FILE:LINE: FIELD.PATH: message`.
ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[\w.\[\]'-]+): (?P<message>.+)$")
RATE = {"limits": [{"key": "client_ip", "rate": "5/s"}]}


def _turnout(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def _base() -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "access_log": {"enabled": False},
        "clusters": {"up": {"endpoints": ["127.0.0.1:9"]}},
        "routes": [{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "up"}}],
    }


def _with_filter(entry: Any) -> dict[str, Any]:
    config = _base()
    config["routes"][0]["filters"] = [entry]
    return config


def _with(**sections: Any) -> dict[str, Any]:
    config = _base()
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value}
    return config


def _feedback_route(sqlite_path: str) -> dict[str, Any]:
    config = _with(state={"sqlite_path": sqlite_path})
    config["routes"].append({"name": "fb", "match": {"path": "/v1/feedback"}, "backend": {"feedback": True}})
    return config


# (case id, config, field the error names, text on the line it names, words of the message)
CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    (
        "rate-limit-redis-without-url",
        _with_filter({"rate_limit": {**RATE, "backend": "redis"}}),
        "routes[0].filters[0].rate_limit",
        "rate_limit:",
        "backend redis needs a Redis",
    ),
    (
        "cache-redis-without-url",
        _with_filter({"cache": {"backend": "redis"}}),
        "routes[0].filters[0].cache",
        "cache:",
        "backend redis needs a Redis",
    ),
    (
        "rate-limit-redis-url-without-scheme",
        _with_filter({"rate_limit": {**RATE, "backend": "redis", "redis_url": "localhost:6379"}}),
        "routes[0].filters[0].rate_limit.redis_url",
        "redis_url:",
        "invalid Redis URL",
    ),
    (
        "state-redis-url-out-of-range",
        _with(state={"backend": "redis", "url": "redis://127.0.0.1:99999/0"}),
        "state.url",
        "url:",
        "invalid Redis URL: Port out of range",
    ),
    (
        "apikey-keys-file-missing",
        _with_filter({"auth_apikey": {"keys_file": "no-such-keys.yaml"}}),
        "routes[0].filters[0].auth_apikey",
        "auth_apikey:",
        "cannot read keys_file",
    ),
    (
        "apikey-keys-file-not-yaml",
        _with_filter({"auth_apikey": {"keys_file": "not-yaml.txt"}}),
        "routes[0].filters[0].auth_apikey",
        "auth_apikey:",
        "is not valid YAML or JSON",
    ),
    (
        "plugin-module-missing",
        _with_filter({"plugin": "tests.support.no_such_plugin:FACTORY"}),
        "routes[0].filters[0].plugin",
        "plugin:",
        "cannot import plugin module 'tests.support.no_such_plugin'",
    ),
    (
        "plugin-module-without-the-factory",
        _with_filter({"plugin": "tests.support.broken_plugins:MISSING"}),
        "routes[0].filters[0].plugin",
        "plugin:",
        "has no attribute 'MISSING'",
    ),
    (
        "plugin-module-raises-on-import",
        _with_filter({"plugin": "tests.support.plugin_import_fails:F"}),
        "routes[0].filters[0].plugin",
        "plugin:",
        "failed: RuntimeError: this plugin module needs PLUGIN_SETTINGS",
    ),
    (
        "plugin-factory-raises",
        _with_filter({"plugin": "tests.support.broken_plugins:RAISING", "config": {"value": 2}}),
        "routes[0].filters[0].config",
        "config:",
        "the factory raised RuntimeError: the plugin's settings service is unreachable",
    ),
    (
        "plugin-factory-builds-no-filter",
        _with_filter({"plugin": "tests.support.broken_plugins:NOT_A_FILTER"}),
        "routes[0].filters[0].plugin",
        "plugin:",
        "the factory returned dict, not a filter",
    ),
    (
        "plugin-config-model-not-a-model",
        _with_filter({"plugin": "tests.support.broken_plugins:BAD_MODEL"}),
        "routes[0].filters[0].plugin",
        "plugin:",
        "is not a filter factory",
    ),
    (
        "plugin-factory-not-callable",
        _with_filter({"plugin": "tests.support.broken_plugins:NOT_CALLABLE"}),
        "routes[0].filters[0].plugin",
        "plugin:",
        "is not a filter factory",
    ),
    (
        "tls-certificate-missing",
        _with(listen={"tls": {"cert": "no-such-cert.pem", "key": "no-such-key.pem"}}),
        "listen.tls.cert",
        "cert:",
        "cannot read",
    ),
    (
        "tls-files-not-pem",
        _with(listen={"tls": {"cert": "not-yaml.txt", "key": "not-yaml.txt"}}),
        "listen.tls.cert",
        "cert:",
        "do not load as a PEM certificate chain",
    ),
    (
        "access-log-directory-missing",
        _with(access_log={"enabled": True, "path": "/nonexistent-turnout-dir/access.log"}),
        "access_log.path",
        "path:",
        "the directory /nonexistent-turnout-dir does not exist",
    ),
    (
        "event-store-under-a-file",
        _feedback_route("PLACEHOLDER/a-file/events.db"),
        "state.sqlite_path",
        "sqlite_path:",
        "is not a directory",
    ),
]


def _write(tmp_path: Path, name: str, config: dict[str, Any]) -> tuple[Path, list[str]]:
    config = copy.deepcopy(config)
    state = config.get("state", {})
    if "sqlite_path" in state:
        (tmp_path / "a-file").write_text("a file where a directory is needed\n")
        state["sqlite_path"] = state["sqlite_path"].replace("PLACEHOLDER", str(tmp_path))
    (tmp_path / "not-yaml.txt").write_text("key: [unclosed\n  - : :\n")
    path = tmp_path / f"{name}.yaml"
    text = yaml.safe_dump(config, sort_keys=False)
    path.write_text(text)
    return path, text.splitlines()


def _one_located_error(stderr: str, path: Path) -> re.Match[str]:
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, lines
    match = ERROR_LINE.match(lines[0])
    assert match is not None, lines[0]
    assert match["file"] == str(path)
    return match


@pytest.mark.parametrize(("case", "config", "field", "on_line", "message"), CASES, ids=[c[0] for c in CASES])
def test_validate_and_run_refuse_with_the_same_located_error(
    tmp_path: Path, case: str, config: dict[str, Any], field: str, on_line: str, message: str
) -> None:
    path, lines = _write(tmp_path, case, config)

    validated = _turnout("validate", str(path))
    assert validated.returncode == 1, validated.stdout
    assert validated.stdout == ""
    error = _one_located_error(validated.stderr, path)
    assert error["field"] == field
    assert message in error["message"]
    assert on_line in lines[int(error["line"]) - 1], (error["line"], lines)

    ran = _turnout("run", "--config", str(path), "--no-watch")
    assert ran.returncode == 1
    assert ran.stderr == validated.stderr


def test_validate_reports_every_unbuildable_part_of_one_file(tmp_path: Path) -> None:
    config = _base()
    config["routes"][0]["filters"] = [
        {"rate_limit": {**RATE, "backend": "redis"}},
        {"plugin": "tests.support.broken_plugins:RAISING"},
    ]
    config["listen"]["tls"] = {"cert": "no-such-cert.pem", "key": "no-such-key.pem"}
    path, _ = _write(tmp_path, "several", config)
    result = _turnout("validate", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    fields = [m["field"] for m in map(ERROR_LINE.match, result.stderr.splitlines()) if m]
    assert sorted(fields) == [
        "listen.tls.cert",
        "routes[0].filters[0].rate_limit",
        "routes[0].filters[1].config",
    ], result.stderr


def test_a_redis_backend_with_the_gateways_redis_validates_without_connecting(tmp_path: Path) -> None:
    """The shared Redis named in `state` is enough, and validating does not need it to be up: the
    port below has nothing listening."""
    config = _with_filter({"rate_limit": {**RATE, "backend": "redis"}})
    config["state"] = {"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"}
    path, _ = _write(tmp_path, "shared-redis", config)
    result = _turnout("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ok: ")


def test_run_with_its_event_store_down_exits_with_one_line(tmp_path: Path) -> None:
    """Whether a Redis answers is not the file's fault, so validate says ok (it connects to nothing);
    run cannot start without its event store and says so on one line, not with a traceback."""
    config = _with(state={"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"})
    config["routes"].append({"name": "fb", "match": {"path": "/v1/feedback"}, "backend": {"feedback": True}})
    path, _ = _write(tmp_path, "store-down", config)
    assert _turnout("validate", str(path)).returncode == 0
    ran = _turnout("run", "--config", str(path), "--no-watch")
    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    # Log lines may come first (the store's own warning); the last line is the reason it stopped.
    last = ran.stderr.splitlines()[-1]
    assert last.startswith("turnout: cannot start: the experiments' event store (state.url): ConnectionError")

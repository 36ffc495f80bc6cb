"""A reload with a config that cannot be built keeps the running config serving.

A real gateway process is reloaded through SIGHUP, the admin API and its file watcher with configs
that load but cannot be built (a Redis rate limit with no Redis anywhere, a plugin whose factory
raises). Each time the old routes keep answering, the new ones do not exist, the refusal is one
located error line in the log (never "Task exception was never retrieved" or a traceback), and the
admin API answers a JSON 400 naming the error. A good config afterwards still reloads, so nothing
(the watcher included) died on the way.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import gateway_config
from tests.support.processes import GatewayProcess, Process, start_gateway, wait_until

# Long enough for a reload on a loaded 2-core machine (it takes milliseconds when idle).
RELOAD_TIMEOUT_S = 20.0
# What a task that died with an exception nobody awaited leaves in asyncio's log.
UNRETRIEVED = "Task exception was never retrieved"


def _routes(new_filters: list[Any] | None) -> list[dict[str, Any]]:
    old = {"name": "old", "match": {"prefix": "/old"}, "backend": {"cluster": "up"}}
    if new_filters is None:
        return [old]
    new = {"name": "new", "match": {"prefix": "/new"}, "backend": {"cluster": "up"}, "filters": new_filters}
    return [old, new]


REDIS_WITHOUT_URL = [{"rate_limit": {"backend": "redis", "limits": [{"key": "client_ip", "rate": "5/s"}]}}]
RAISING_PLUGIN = [{"plugin": "tests.support.broken_plugins:RAISING"}]


def _write(path: Path, config: dict[str, Any]) -> list[str]:
    """Write the config in one rename (as editors save), so the watcher never reads half a file."""
    text = yaml.safe_dump(config, sort_keys=False)
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)
    return text.splitlines()


def _line_of(lines: list[str], text: str) -> int:
    (number,) = [i for i, line in enumerate(lines, 1) if text in line]
    return number


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def _admin_reload(gateway: GatewayProcess) -> tuple[int, str, Any]:
    request = urllib.request.Request(
        f"{gateway.admin_url}/admin/reload",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=RELOAD_TIMEOUT_S) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


def _serves_only_the_old_routes(gateway: GatewayProcess) -> None:
    status, body = _get(f"{gateway.url}/old/x")
    assert status == 200 and body["name"] == "a" and body["path"] == "/old/x"
    assert _get(f"{gateway.url}/new/x")[0] == 404


def _refusals(gateway: GatewayProcess, source: str) -> list[str]:
    return [line for line in gateway.log().splitlines() if f"config reload ({source}) refused" in line]


@pytest.fixture
def gateway_files(tmp_path: Path, upstream_a: Process) -> tuple[Path, dict[str, Any]]:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=_routes(None))
    path = tmp_path / "gateway.yaml"
    _write(path, config)
    return path, config


def _start(path: Path, config: dict[str, Any], logs: Path, *, watch: bool) -> Iterator[GatewayProcess]:
    extra = () if watch else ("--no-watch",)
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], logs, extra)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def gateway(gateway_files: tuple[Path, dict[str, Any]], tmp_path: Path) -> Iterator[GatewayProcess]:
    yield from _start(*gateway_files, tmp_path, watch=False)


@pytest.fixture
def watched_gateway(gateway_files: tuple[Path, dict[str, Any]], tmp_path: Path) -> Iterator[GatewayProcess]:
    yield from _start(*gateway_files, tmp_path, watch=True)


def test_sighup_and_admin_reload_refuse_an_unbuildable_config_and_keep_serving(
    gateway: GatewayProcess, gateway_files: tuple[Path, dict[str, Any]]
) -> None:
    path, config = gateway_files
    _serves_only_the_old_routes(gateway)

    lines = _write(path, {**config, "routes": _routes(REDIS_WITHOUT_URL)})
    located = f"{path}:{_line_of(lines, 'rate_limit:')}: routes[1].filters[0].rate_limit: backend redis needs"
    gateway.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: bool(_refusals(gateway, "SIGHUP")), RELOAD_TIMEOUT_S, message="the SIGHUP refusal")
    (refusal,) = _refusals(gateway, "SIGHUP")
    assert " ERROR " in refusal and located in refusal, refusal
    _serves_only_the_old_routes(gateway)

    status, content_type, body = _admin_reload(gateway)
    assert status == 400
    assert content_type.startswith("application/json")
    assert body["code"] == "config_invalid"
    assert isinstance(body["error"], str) and body["error"]
    (error,) = body["errors"]
    assert error.startswith(located), error
    _serves_only_the_old_routes(gateway)

    lines = _write(path, {**config, "routes": _routes(RAISING_PLUGIN)})
    status, _, body = _admin_reload(gateway)
    assert status == 400 and body["code"] == "config_invalid"
    # The entry has no `config:` of its own, so the error points at the entry's line.
    assert body["errors"] == [
        f"{path}:{_line_of(lines, 'plugin:')}: routes[1].filters[0].config: "
        "the factory raised RuntimeError: the plugin's settings service is unreachable"
    ]
    _serves_only_the_old_routes(gateway)

    _write(path, {**config, "routes": _routes([])})
    status, _, body = _admin_reload(gateway)
    assert (status, body) == (200, {"reloaded": True})
    status, answer = _get(f"{gateway.url}/new/x")
    assert status == 200 and answer["path"] == "/new/x"

    assert gateway.stop() == 0
    log = gateway.log()
    assert UNRETRIEVED not in log and "Traceback" not in log, log


def test_the_file_watcher_refuses_an_unbuildable_config_and_keeps_watching(
    watched_gateway: GatewayProcess, gateway_files: tuple[Path, dict[str, Any]]
) -> None:
    path, config = gateway_files
    _serves_only_the_old_routes(watched_gateway)

    _write(path, {**config, "routes": _routes(RAISING_PLUGIN)})
    wait_until(
        lambda: bool(_refusals(watched_gateway, "file change")),
        RELOAD_TIMEOUT_S,
        message="the watcher's refusal",
    )
    assert all(
        "routes[1].filters[0].config: the factory raised" in line
        for line in _refusals(watched_gateway, "file change")
    )
    _serves_only_the_old_routes(watched_gateway)

    _write(path, {**config, "routes": _routes([])})
    wait_until(
        lambda: _get(f"{watched_gateway.url}/new/x")[0] == 200, RELOAD_TIMEOUT_S, message="the good config"
    )
    assert watched_gateway.stop() == 0
    log = watched_gateway.log()
    assert UNRETRIEVED not in log and "Traceback" not in log, log

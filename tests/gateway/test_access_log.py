"""The access log: its lines, its choice of fields, sampling, rotation, and a real gateway's file
written within a second and on SIGTERM."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from gateway.access_log import FIELDS, AccessLog
from gateway.config import ConfigError
from gateway.core.context import RequestContext
from gateway.loading import load_gateway_config
from tests.conftest import gateway_config
from tests.support.processes import Process, start_gateway

# Past the gateway's one-second promise with room for a busy two-core machine, yet short enough that
# a log written only at shutdown fails the test.
WRITTEN_WITHIN_S = 1.5


def _ctx(request_id: str, status: int = 200) -> RequestContext:
    ctx = RequestContext("POST", "/v2/models/m/infer", "", {}, "127.0.0.1", time.monotonic())
    ctx.request_id = request_id
    ctx.route = "infer"
    ctx.cluster = "models"
    ctx.endpoint = "127.0.0.1:9000"
    ctx.status = status
    ctx.upstream_latency = 0.002
    ctx.bytes_in = 97
    ctx.bytes_out = 11
    return ctx


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_each_request_is_one_json_line_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    for n in range(3):
        log.log(_ctx(f"r{n}"), 0.0035)
    log.close()

    lines = _lines(path)
    assert [line["request_id"] for line in lines] == ["r0", "r1", "r2"]
    assert list(lines[0]) == list(FIELDS)
    assert lines[0]["route"] == "infer" and lines[0]["status"] == 200
    assert lines[0]["duration_ms"] == 3.5 and lines[0]["upstream_ms"] == 2.0
    assert lines[0]["bytes_in"] == 97 and lines[0]["method"] == "POST"


def test_chosen_fields_only_in_their_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), fields=("status", "request_id", "duration_ms"))
    log.log(_ctx("r1"), 0.001)
    log.close()

    assert [list(line.items()) for line in _lines(path)] == [
        [("status", 200), ("request_id", "r1"), ("duration_ms", 1.0)]
    ]


def test_a_full_buffer_is_written_before_any_flush(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    sent = 0
    while not path.stat().st_size:
        assert sent < 2000, "64 KiB of lines should have been handed to the writer by now"
        log.log(_ctx(f"r{sent}"), 0.001)
        sent += 1
        time.sleep(0.0001 if sent > 250 else 0)  # give the writer thread a moment once it may write
    log.close()
    assert len(_lines(path)) == sent


def test_sampling_keeps_about_its_share_and_every_server_error(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), sample=0.25)
    for n in range(4000):
        log.log(_ctx(f"ok{n}"), 0.001)
    for n in range(50):
        log.log(_ctx(f"err{n}", status=502), 0.001)
    log.close()

    ids = [str(line["request_id"]) for line in _lines(path)]
    kept = sum(1 for i in ids if i.startswith("ok"))
    assert 800 < kept < 1200  # 1,000 expected; 6 standard deviations either side
    assert sum(1 for i in ids if i.startswith("err")) == 50


def test_reopen_writes_to_a_new_file_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    log = AccessLog(str(path))
    log.log(_ctx("before"), 0.001)
    log.flush()
    path.rename(rotated)  # what logrotate does before it signals
    log.log(_ctx("buffered"), 0.001)
    log.reopen()
    log.log(_ctx("after"), 0.001)
    log.close()

    assert [line["request_id"] for line in _lines(rotated)] == ["before", "buffered"]
    assert [line["request_id"] for line in _lines(path)] == ["after"]


@pytest.mark.parametrize("sample", [0, 1.5])
def test_sample_outside_zero_to_one_is_refused(sample: float) -> None:
    with pytest.raises(ValueError, match="sample"):
        AccessLog("stdout", sample=sample)


def test_config_refuses_an_unknown_field(tmp_path: Path) -> None:
    config = gateway_config(["127.0.0.1:9"], access_log={"enabled": True, "fields": ["status", "colour"]})
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))

    with pytest.raises(ConfigError, match=r"access_log\.fields"):
        load_gateway_config(path)


def _get(url: str, request_id: str) -> None:
    request = urllib.request.Request(url, headers={"x-request-id": request_id})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _wait_for_ids(path: Path, wanted: set[str], within_s: float) -> set[str]:
    deadline = time.monotonic() + within_s
    seen: set[str] = set()
    while time.monotonic() < deadline:
        if path.exists():
            seen = {str(line["request_id"]) for line in _lines(path)}
            if wanted <= seen:
                return seen
        time.sleep(0.05)
    return seen


def test_a_gateway_writes_within_a_second_rotates_on_sigusr1_and_flushes_on_sigterm(
    upstream_a: Process, tmp_path: Path, session_logs: Path
) -> None:
    path = tmp_path / "access.log"
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], access_log={"enabled": True, "path": str(path)})
    config_path = tmp_path / "gw.yaml"
    config_path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(config_path, config["listen"]["port"], config["admin"]["port"], session_logs)
    try:
        _get(f"{gateway.url}/echo", "first")
        assert "first" in _wait_for_ids(path, {"first"}, WRITTEN_WITHIN_S)

        rotated = tmp_path / "access.log.1"
        path.rename(rotated)
        gateway.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)  # the signal is handled on the gateway's loop, between requests
        _get(f"{gateway.url}/echo", "second")
        assert "second" in _wait_for_ids(path, {"second"}, WRITTEN_WITHIN_S)

        _get(f"{gateway.url}/echo", "last")
        gateway.proc.send_signal(signal.SIGTERM)  # at once: "last" may still be in the buffer
        assert gateway.proc.wait(20) == 0
    finally:
        gateway.stop()
    assert [line["request_id"] for line in _lines(rotated)] == ["first"]
    assert [line["request_id"] for line in _lines(path)] == ["second", "last"]


def test_the_supervisor_passes_sigusr1_to_every_process(
    upstream_a: Process, tmp_path: Path, session_logs: Path
) -> None:
    path = tmp_path / "access.log"
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], access_log={"enabled": True, "path": str(path)})
    config_path = tmp_path / "gw.yaml"
    config_path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(
        config_path,
        config["listen"]["port"],
        config["admin"]["port"],
        session_logs,
        ("--processes", "2", "--no-watch"),
    )
    try:
        # A new connection each: SO_REUSEPORT spreads them over both processes.
        before = {f"before-{n}" for n in range(20)}
        for request_id in before:
            _get(f"{gateway.url}/echo", request_id)
        assert before <= _wait_for_ids(path, before, WRITTEN_WITHIN_S)
        rotated = tmp_path / "access.log.1"
        path.rename(rotated)
        gateway.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)  # passed on by the supervisor's loop, then handled on each process's loop
        after = {f"after-{n}" for n in range(20)}
        for request_id in after:
            _get(f"{gateway.url}/echo", request_id)
        assert after <= _wait_for_ids(path, after, WRITTEN_WITHIN_S)
        assert gateway.proc.poll() is None
    finally:
        gateway.stop()
    assert {line["request_id"] for line in _lines(rotated)} == before


def test_sigusr1_leaves_a_gateway_without_access_log_serving(
    upstream_a: Process, tmp_path: Path, session_logs: Path
) -> None:
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"])
    config_path = tmp_path / "gw.yaml"
    config_path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(config_path, config["listen"]["port"], config["admin"]["port"], session_logs)
    try:
        gateway.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        _get(f"{gateway.url}/echo", "still-here")
        assert gateway.proc.poll() is None
    finally:
        gateway.stop()

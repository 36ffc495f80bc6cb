"""`turnout run --processes N`: real supervisors and gateway processes on loopback.

One supervisor with two processes serves the module; tests that stop or break a supervisor start
their own. Which process owns a socket is read from the kernel (psutil), not from the gateway.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped]
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway_config
from tests.support.processes import ROOT, GatewayProcess, Process, _env, start_gateway, wait_until

# A supervisor starts its processes one import and config build each: allow a loaded 2-core machine.
START_S = 60.0
# The moment around a killed process's exit, during which connections queued for it are reset.
SETTLE_S = 0.3
# A request still in flight when SIGTERM arrives: long enough to be caught mid-way.
IN_FLIGHT_MS = 1500


def _write(tmp: Path, config: dict[str, Any], name: str = "gateway.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(config))
    return path


def _start(tmp: Path, config: dict[str, Any], processes: str = "2") -> GatewayProcess:
    path = _write(tmp, config)
    return start_gateway(
        path, config["listen"]["port"], config["admin"]["port"], tmp, ("--processes", processes, "--no-watch")
    )


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return orjson.loads(response.read())


def _pids(gateway: GatewayProcess) -> list[int]:
    return [entry["pid"] for entry in _get_json(f"{gateway.admin_url}/admin/processes")]


def _ready(gateway: GatewayProcess) -> int:
    """Processes ready, read from /readyz whether it answers 200 or 503."""
    try:
        answer = _get_json(f"{gateway.admin_url}/readyz")
    except urllib.error.HTTPError as err:
        answer = orjson.loads(err.read())
    return int(answer["ready"])


def _requests_total(gateway: GatewayProcess) -> float:
    with urllib.request.urlopen(f"{gateway.admin_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "turnout_requests"
        for sample in family.samples
        if sample.name == "turnout_requests_total"
    )


def _fresh_get(port: int, path: str = "/count") -> int:
    """One request on a new connection, so the kernel picks a process for it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _listening_pids(port: int) -> set[int]:
    pids = set()
    for proc in psutil.process_iter():
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    pids.add(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return pids


@pytest.fixture(scope="module")
def supervised(upstream_a: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("processes")
    gateway = _start(tmp, gateway_config([f"127.0.0.1:{upstream_a.port}"]))
    yield gateway
    gateway.stop()


def test_two_processes_accept_on_one_port(supervised: GatewayProcess) -> None:
    pids = _pids(supervised)
    assert len(set(pids)) == 2 and supervised.proc.pid not in pids
    assert _listening_pids(supervised.port) == set(pids)
    # Connections held open at once: the kernel spreads them over both listening sockets.
    conns = []
    for _ in range(40):
        conn = http.client.HTTPConnection("127.0.0.1", supervised.port, timeout=10)
        conn.request("GET", "/count")
        conn.getresponse().read()
        conns.append(conn)
    try:
        client_ports = {conn.sock.getsockname()[1] for conn in conns}
        owners = set()
        for pid in pids:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port in client_ports and conn.laddr.port == supervised.port:
                    owners.add(pid)
        assert owners == set(pids)
    finally:
        for conn in conns:
            conn.close()


def test_metrics_sum_requests_across_processes(supervised: GatewayProcess) -> None:
    before = _requests_total(supervised)
    sent = 60
    assert all(_fresh_get(supervised.port) == 200 for _ in range(sent))
    assert _requests_total(supervised) == before + sent


def test_clusters_merge_the_processes_views(supervised: GatewayProcess) -> None:
    clusters = _get_json(f"{supervised.admin_url}/admin/clusters")
    (endpoint,) = clusters["up"]["endpoints"]
    assert endpoint["healthy"] is True and endpoint["processes_available"] == 2
    before = endpoint["total_requests"]
    assert all(_fresh_get(supervised.port) == 200 for _ in range(20))
    (endpoint,) = _get_json(f"{supervised.admin_url}/admin/clusters")["up"]["endpoints"]
    assert endpoint["total_requests"] == before + 20


def test_readyz_is_ready_when_every_process_is(supervised: GatewayProcess) -> None:
    answer = _get_json(f"{supervised.admin_url}/readyz")
    assert answer == {"status": "ready", "processes": 2, "ready": 2}


def test_killed_process_is_restarted_and_the_other_keeps_serving(supervised: GatewayProcess) -> None:
    old = _pids(supervised)
    os.kill(old[0], signal.SIGKILL)
    wait_until(lambda: _listening_pids(supervised.port) == {old[1]}, 10, message="the killed socket to go")
    # Connections the kernel had queued for the dead process are reset with it (they were in flight
    # on it); give that instant a moment to pass. After it, every new connection is served.
    time.sleep(SETTLE_S)
    assert [_fresh_get(supervised.port) for _ in range(30)] == [200] * 30
    wait_until(
        lambda: _ready(supervised) == 2 and _pids(supervised)[0] != old[0],
        START_S,
        message="the killed process to be replaced",
    )
    processes = _get_json(f"{supervised.admin_url}/admin/processes")
    assert processes[0]["restarts"] == 1 and processes[1]["pid"] == old[1]
    assert _listening_pids(supervised.port) == set(_pids(supervised))
    assert "restarting it in" in supervised.log()


def _reloads(gateway: GatewayProcess, result: str) -> float:
    with urllib.request.urlopen(f"{gateway.admin_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "turnout_config_reloads_total" and sample.labels["result"] == result:
                return sample.value
    return 0.0


def _post(url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, b"{}", {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def test_bad_config_is_refused_before_any_process_reloads(supervised: GatewayProcess) -> None:
    assert supervised.config_path is not None
    good = supervised.config_path.read_text()
    ok_before, refused_before = _reloads(supervised, "ok"), _reloads(supervised, "refused")
    try:
        supervised.config_path.write_text(good.replace("cluster: up", "cluster: missing"))
        status, body = _post(f"{supervised.admin_url}/admin/reload")
        assert status == 400 and "missing" in " ".join(body["errors"])
        supervised.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "refused before any process reloaded" in supervised.log(), 10)
    finally:
        supervised.config_path.write_text(good)
    # No process heard of either bad reload: none refused one, none reloaded.
    assert (_reloads(supervised, "ok"), _reloads(supervised, "refused")) == (ok_before, refused_before)
    status, body = _post(f"{supervised.admin_url}/admin/reload")
    assert status == 200 and body["processes"] == 2
    wait_until(lambda: _reloads(supervised, "ok") == ok_before + 2, 10, message="both processes to reload")
    supervised.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _reloads(supervised, "ok") == ok_before + 4, 10, message="SIGHUP to reach both")


def test_endpoint_drain_reaches_every_process(supervised: GatewayProcess, upstream_a: Process) -> None:
    address = f"127.0.0.1:{upstream_a.port}"
    url = f"{supervised.admin_url}/admin/clusters/up/endpoints/{address}"
    assert _post(f"{url}/drain")[0] == 200
    try:
        (endpoint,) = _get_json(f"{supervised.admin_url}/admin/clusters")["up"]["endpoints"]
        assert endpoint["drained"] is True and endpoint["processes_available"] == 0
    finally:
        assert _post(f"{url}/undrain")[0] == 200
    (endpoint,) = _get_json(f"{supervised.admin_url}/admin/clusters")["up"]["endpoints"]
    assert endpoint["processes_available"] == 2


def test_sigterm_stops_every_process_within_ten_seconds(upstream_a: Process, tmp_path: Path) -> None:
    # The process count from the file this time: `processes: 2`, no --processes.
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], processes=2)
    path = _write(tmp_path, config)
    gateway = start_gateway(
        path, config["listen"]["port"], config["admin"]["port"], tmp_path, ("--no-watch",)
    )
    pids = _pids(gateway)
    assert len(set(pids)) == 2
    started = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(10) == 0
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids), 10 - (time.monotonic() - started))
    assert time.monotonic() - started < 10


def test_sigterm_lets_requests_in_flight_on_every_process_finish(upstream_a: Process, tmp_path: Path) -> None:
    gateway = _start(tmp_path, gateway_config([f"127.0.0.1:{upstream_a.port}"]))
    pids = set(_pids(gateway))
    statuses: list[int] = []
    # Slow requests on connections held open, until both processes have some in flight.
    conns: list[http.client.HTTPConnection] = []
    serving: set[int] = set()
    try:
        while serving != pids and len(conns) < 40:
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
            conn.request("GET", f"/slow?ms={IN_FLIGHT_MS}")
            conns.append(conn)
            client_port = conn.sock.getsockname()[1]
            for pid in pids - serving:
                if any(
                    c.raddr and c.raddr.port == client_port
                    for c in psutil.Process(pid).net_connections("tcp")
                ):
                    serving.add(pid)
        assert serving == pids
        gateway.proc.send_signal(signal.SIGTERM)
        for conn in conns:
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        assert gateway.proc.wait(10) == 0
    finally:
        for conn in conns:
            conn.close()
        gateway.stop()
    assert statuses == [200] * len(conns)


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", *args],
        cwd=ROOT,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=START_S + 30,
    )


def test_zero_processes_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, gateway_config(["127.0.0.1:9"]))
    result = _run_cli("--config", str(path), "--processes", "0")
    assert result.returncode == 2 and "--processes: must be at least 1, got 0" in result.stderr


def test_processes_zero_in_the_file_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, gateway_config(["127.0.0.1:9"], processes=0))
    result = _run_cli("--config", str(path))
    assert result.returncode == 1 and "processes: must be at least 1, got 0" in result.stderr


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    config = gateway_config(["127.0.0.1:9"])
    path = _write(tmp_path, config)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", config["listen"]["port"]))
        holder.listen()
        result = _run_cli("--config", str(path), "--processes", "2")
    port = config["listen"]["port"]
    assert result.returncode == 1
    assert f"turnout: cannot run 2 processes: listen 127.0.0.1:{port} is already in use" in result.stderr


def test_process_that_crashes_at_start_stops_the_supervisor(tmp_path: Path) -> None:
    # Every config check passes, so the crash is injected: a sitecustomize that ends each gateway
    # process the supervisor starts (they alone carry --admin-socket) before it can serve.
    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if '--admin-socket' in sys.argv:\n"
        "    sys.stderr.write('injected fault at start\\n')\n"
        "    sys.stderr.flush()\n"
        "    os._exit(3)\n"
    )
    env = _env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    config = gateway_config(["127.0.0.1:9"])
    path = _write(tmp_path, config)
    started = time.monotonic()
    result = _run_cli("--config", str(path), "--processes", "2", env=env)
    assert result.returncode == 1
    assert "cannot run 2 processes: process 0 exited with status 3: injected fault at start" in result.stderr
    assert "restarting" not in result.stderr
    assert time.monotonic() - started < START_S

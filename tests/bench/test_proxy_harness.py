"""Smoke tests of the proxy benchmark harness: real processes on loopback, no speed asserted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _loadgen import run_load

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
# Bounds on waiting for children: far above what they need, only there so a broken harness fails
# the test instead of hanging it.
START_TIMEOUT_S = 20.0
RUN_TIMEOUT_S = 60.0
POLL_S = 0.02


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    """bench/upstream.py in its own process, on a port it picks and announces."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH_DIR / "upstream.py"), "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        assert line.startswith(b"upstream listening on 127.0.0.1:"), line
        yield int(line.rsplit(b":", 1)[1])
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def test_python_loadgen_measures_the_python_upstream(upstream_port: int) -> None:
    result = await run_load(f"http://127.0.0.1:{upstream_port}/", connections=4, duration_s=0.5)

    assert result.requests > 0
    assert result.rps > 0
    assert result.errors == 0
    assert 0 < result.p50_ms <= result.p99_ms


async def test_python_loadgen_fails_when_nothing_answers() -> None:
    port = _closed_port()
    with pytest.raises(RuntimeError, match="no response"):
        await run_load(f"http://127.0.0.1:{port}/", connections=2, duration_s=0.2)


async def _serve_once_per_connection(answer: bytes) -> asyncio.Server:
    """A loopback server that reads one request head, writes ``answer`` (maybe empty), and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_python_loadgen_reconnects_when_the_server_closes_after_each_response() -> None:
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with await _serve_once_per_connection(closing) as server:
        port = server.sockets[0].getsockname()[1]
        result = await run_load(f"http://127.0.0.1:{port}/", connections=2, duration_s=0.3)

    assert result.requests > 2  # more responses than connections: it reconnected
    assert result.errors == 0


async def test_python_loadgen_counts_hang_ups_without_an_answer_as_errors() -> None:
    async with await _serve_once_per_connection(b"") as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(RuntimeError, match=r"no response .* \([1-9]\d* errors\)"):
            await run_load(f"http://127.0.0.1:{port}/", connections=2, duration_s=0.2)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_json_line_contract_with_the_python_load_generator() -> None:
    command = [sys.executable, str(BENCH_DIR / "proxy.py"), "--json", "--duration", "1s", "--warmup", "0s"]
    command += ["--concurrency", "8", "--targets", "direct", "--loadgen", "python"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["concurrency"] == 8
    assert summary["loadgen"] == "python"
    assert summary["direct_rps"] > 0
    for absent in ("turnout_rps", "nginx_rps", "turnout_p99_ms", "nginx_p99_ms"):
        assert summary[absent] is None
    direct = summary["runs"]["8"]["direct"]
    assert direct["requests"] > 0
    assert 0 < direct["p50_ms"] <= direct["p99_ms"]
    assert direct["cpu_us_per_req"] is None  # no proxy in the path, nothing to charge
    assert any(line.startswith("pinning:") for line in lines)
    assert any(line.startswith("concurrency 8") for line in lines)


def test_ctrl_c_stops_every_child_process() -> None:
    command = [sys.executable, str(BENCH_DIR / "proxy.py"), "--duration", "30s", "--warmup", "0s"]
    command += ["--concurrency", "4", "--targets", "direct", "--loadgen", "python"]
    harness = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        children = _wait_for_descendants(harness.pid, needle="_loadgen.py")
        harness.send_signal(signal.SIGINT)
        assert harness.wait(timeout=RUN_TIMEOUT_S) == 130
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        assert harness.stderr is not None
        harness.stderr.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while any(_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert not [pid for pid in children if _running(pid)]


def _wait_for_descendants(root: int, needle: str) -> set[int]:
    """Every descendant of ``root`` once one whose command line contains ``needle`` is running."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _descendants(root)
        if any(needle in _cmdline(pid) for pid in found):
            return found
        time.sleep(POLL_S)
    raise AssertionError(f"no child running {needle} under {root}")


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace("\0", " ")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan reaped late by init still counts as stopped)."""
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat[stat.rindex(")") + 2] != "Z"


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""

"""Child processes for benchmarks: spawned in their own process group, pinned, measured, always reaped.

Each child leads a new session (so its process group holds it and whatever it forks, such as nginx's
worker), is asked to die with the harness (PR_SET_PDEATHSIG) in case the harness itself is killed
outright, and is stopped by signalling its whole group: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# How long a stopped process gets to exit after SIGTERM before its group is killed: nginx and the
# Python servers exit in milliseconds; a gateway draining idle keep-alive connections may take longer.
STOP_GRACE_S = 3.0
# Readiness and exit polls: short enough to add little to start-up, long enough not to busy-wait.
POLL_INTERVAL_S = 0.02
# Per-probe socket timeout for readiness checks on loopback, where a healthy answer takes microseconds.
PROBE_TIMEOUT_S = 1.0
# How much of a failed child's log to show: enough for a traceback or nginx's error line.
LOG_TAIL_BYTES = 2000
# prctl(2) option that delivers a signal to a child when the thread that forked it exits (Linux).
_PR_SET_PDEATHSIG = 1


class ChildFailed(RuntimeError):
    """A child process exited early, failed to become ready, or overran its time."""


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPUs the proxy under test and the client side (upstream, load generator) run on."""

    proxy_cpus: str | None
    client_cpus: str | None
    description: str

    def proxy(self, argv: Sequence[str]) -> list[str]:
        return _taskset(self.proxy_cpus, argv)

    def client(self, argv: Sequence[str]) -> list[str]:
        return _taskset(self.client_cpus, argv)


def _taskset(cpus: str | None, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus is not None else list(argv)


def choose_pinning() -> Pinning:
    """Proxy on the first allowed CPU, upstream and load generator on the second, when possible."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if shutil.which("taskset") is None:
        return Pinning(None, None, "none (taskset not found)")
    if len(cpus) < 2:
        return Pinning(None, None, f"none (only {len(cpus)} CPU available)")
    proxy_cpu, client_cpu = str(cpus[0]), str(cpus[1])
    return Pinning(
        proxy_cpu,
        client_cpu,
        f"taskset: proxy under test on CPU {proxy_cpu}; upstream and load generator on CPU {client_cpu}",
    )


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to SIGKILL the child if the harness dies first (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: the hook itself only calls prctl
    prctl = libc.prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the child's process group, wait up to ``grace_s``, then SIGKILL whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # Also sweeps members that outlived the leader, such as an nginx worker whose master exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def spawned(argv: Sequence[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with stdout and stderr in ``log_path``; stop its whole group on leaving."""
    with open(log_path, "wb") as log:
        proc = _popen(argv, log)
        try:
            yield proc
        finally:
            stop_group(proc)


def _popen(argv: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return spawn_in_group(argv, log, subprocess.STDOUT)


def spawn_in_group(
    argv: Sequence[str], stdout: IO[bytes] | int, stderr: IO[bytes] | int, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` leading its own process group (stop it with ``stop_group``), killed by the
    kernel if the harness dies first."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent_hook(),
    )


def run_to_completion(argv: Sequence[str], log_path: Path, timeout_s: float) -> str:
    """Run a short-lived child to its end and return what it printed; raise if it fails or overruns."""
    with spawned(argv, log_path) as proc:
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ChildFailed(f"{argv[0]} ran past {timeout_s:g}s") from None
    output = log_path.read_text(errors="replace")
    if code != 0:
        raise ChildFailed(f"{' '.join(argv)} exited with status {code}:\n{output[-LOG_TAIL_BYTES:]}")
    return output


def start_service(
    stack: contextlib.ExitStack,
    argv: Sequence[str],
    log_path: Path,
    ready: Callable[[], bool],
    what: str,
    timeout_s: float,
) -> subprocess.Popen[bytes]:
    """Spawn a long-lived child whose teardown ``stack`` owns, and wait until ``ready`` says so."""
    proc = stack.enter_context(spawned(argv, log_path))
    wait_until(ready, proc, log_path, what, timeout_s)
    return proc


def log_tail(log_path: Path) -> str:
    try:
        data = log_path.read_bytes()
    except OSError:
        return ""
    return data[-LOG_TAIL_BYTES:].decode(errors="replace").strip()


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], log_path: Path, what: str, timeout_s: float
) -> None:
    """Poll ``ready`` until true; fail early, with the child's log, if the child exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise ChildFailed(f"{what} exited with status {proc.returncode}:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise ChildFailed(f"{what} not ready after {timeout_s:g}s:\n{log_tail(log_path)}")
        time.sleep(POLL_INTERVAL_S)


def http_status(port: int, path: str = "/", headers: Sequence[tuple[str, str]] = ()) -> int | None:
    """The status of a GET to 127.0.0.1:``port``, or None when nothing answers properly."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", path, headers={**dict(headers), "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def free_port() -> int:
    """A loopback port free at the time of asking (for configs that need a number up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_accounting_available() -> bool:
    return Path("/proc/self/stat").exists()


def group_cpu_seconds(pgid: int) -> float:
    """User plus system CPU time of every live process in group ``pgid``, from /proc/<pid>/stat."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # the process exited between listing and reading
        # The command name, field 2, is parenthesised and may hold spaces: split after its last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state) of proc(5), so pgrp (5) is [2], utime (14) [11], stime (15) [12].
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while tearing down, so a second signal cannot strand children."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit so the same clean-up as Ctrl-C runs."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)

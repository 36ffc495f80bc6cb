"""Real processes for tests: upstream servers and gateways on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Startup deadline for a child process: generous for a loaded 2-core CI machine.
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {message}")


async def wait_until_async(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01, message: str = "condition"
) -> None:
    """`wait_until` for a condition that the event loop itself makes true (an in-process upstream,
    the gateway's own runtime): waits without blocking the loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out waiting for {message}")
        await asyncio.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _spawn(argv: list[str], log_path: Path | None) -> subprocess.Popen[bytes]:
    """Start a child with its output in `log_path` (the child keeps the file; the parent closes it)."""
    if log_path is None:
        return subprocess.Popen(
            argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
    with open(log_path, "wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)


def start_upstream(
    name: str, port: int | None = None, log_dir: Path | None = None, fail_rate: float = 0.0
) -> Process:
    port = port or free_port()
    log_path = (log_dir / f"upstream-{name}-{port}.log") if log_dir else None
    argv = [sys.executable, "-m", "tests.support.upstream", "--port", str(port), "--name", name]
    if fail_rate:
        argv += ["--fail-rate", str(fail_rate)]
    proc = _spawn(argv, log_path)
    process = Process(proc, port, log_path)
    try:
        wait_until(
            lambda: proc.poll() is None and http_ok(f"http://127.0.0.1:{port}/count"),
            START_TIMEOUT_S,
            message=f"upstream {name} on {port}",
        )
    except TimeoutError:
        process.kill()
        raise
    return process


@dataclass
class GatewayProcess(Process):
    admin_port: int = 0
    config_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


def start_gateway(
    config_path: Path, port: int, admin_port: int, log_dir: Path, extra_args: tuple[str, ...] = ()
) -> GatewayProcess:
    log_path = log_dir / f"gateway-{port}.log"
    proc = _spawn(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(config_path), *extra_args], log_path
    )
    gateway = GatewayProcess(proc, port, log_path, admin_port, config_path)
    try:
        wait_until(
            lambda: proc.poll() is None and http_ok(f"http://127.0.0.1:{admin_port}/readyz"),
            START_TIMEOUT_S,
            message=f"gateway on {port}",
        )
    except TimeoutError:
        gateway.kill()
        raise RuntimeError(f"gateway did not start:\n{gateway.log()}") from None
    return gateway

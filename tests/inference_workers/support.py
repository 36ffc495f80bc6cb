"""Helpers for the worker tests: free ports, worker processes, short polls with deadlines."""

from __future__ import annotations

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
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
# A worker imports numpy, onnxruntime, scikit-learn and grpc before it listens: about two seconds
# on an idle 2-core machine; the deadline leaves room for a machine busy with other tests.
START_TIMEOUT_S = 60.0
POLL_S = 0.02


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of `count` consecutive ports that are all free now (a pool takes base + i)."""
    for _ in range(100):
        base = free_port()
        if base + count > 65536:
            continue
        taken: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                taken.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in taken:
                sock.close()
        return base
    raise RuntimeError(f"no run of {count} free ports found")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_worker(repository: Path, log_dir: Path, *extra: str) -> WorkerProcess:
    """Start `python -m inference_workers.worker` on free ports and wait until it is ready."""
    http_port, grpc_port = free_port(), free_port()
    log_path = log_dir / f"worker-{http_port}.log"
    log_file: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (the child writes to it until it exits)
    command = [
        sys.executable,
        "-m",
        "inference_workers.worker",
        "--model-repository",
        str(repository),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--device",
        "cpu",
        *extra,
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    worker = WorkerProcess(process, http_port, grpc_port, log_path)
    ready_url = f"{worker.url}/v2/health/ready"
    try:
        wait_for(
            lambda: process.poll() is not None or http_status(ready_url) == 200,
            START_TIMEOUT_S,
            "worker ready",
        )
    except TimeoutError:
        worker.stop(signal.SIGKILL)
        raise
    if process.poll() is not None:
        raise RuntimeError(f"worker exited with {process.returncode}:\n{worker.log()}")
    return worker

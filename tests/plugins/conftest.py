"""A private redis-server for the plugin tests, on a free loopback port (never the machine's 6379).

One server per test session; tests may kill, pause or restart it (same port) to simulate outages,
and the `redis_server` fixture hands each test a running, empty server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import free_port

# Startup deadline: redis-server is up in milliseconds, but a loaded 2-core CI box can be slow.
_START_TIMEOUT_S = 10.0
_POLL_S = 0.01


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _command(port: int, *args: str) -> bytes:
    """One command in the RESP wire format; the raw reply (enough for FLUSHALL)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        parts.append(f"${len(arg.encode())}\r\n{arg}\r\n".encode())
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"".join(parts))
        return sock.recv(1024)


class RedisServer:
    """A redis-server child process that tests can stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--bind", "127.0.0.1", "--dir", str(self._workdir)]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(_POLL_S)

    def kill(self) -> None:
        """SIGKILL: the server vanishes the way a crashed one does (connections reset)."""
        if self._proc is not None:
            self.resume()
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the server holds its connections but answers nothing (a hung server)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        _command(self.port, "FLUSHALL")

    def command(self, *args: str) -> bytes:
        return _command(self.port, *args)


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        # On CI (.ci/run installs it) a missing server is a failure; elsewhere the Redis tests wait.
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The private server, running and empty at the start of the test."""
    redis_session.resume()
    if not redis_session.running:
        redis_session.start()
    redis_session.flush()
    yield redis_session
    redis_session.resume()

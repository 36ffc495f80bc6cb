"""Model servers for the interop tests, started once per session: real MLServer and KServe
processes (skipped, or failed on CI, when their venvs are not built) and two replicas of the
TorchServe stand-in."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.model_servers import ModelServer, start_kserve, start_mlserver
from tests.interop.server_venvs import server_python
from tests.support.processes import Process, _spawn, free_port, http_ok, wait_until


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    server = start_mlserver(server_python("mlserver"), tmp_path_factory.mktemp("mlserver"), "bc")
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    server = start_kserve(server_python("kserve"), tmp_path_factory.mktemp("kserve"), "bc")
    yield server
    server.process.stop()


def _start_standin(log_dir: Path) -> Process:
    port = free_port()
    log_path = log_dir / f"torchserve-standin-{port}.log"
    argv = [sys.executable, "-m", "tests.interop.torchserve_standin", "--port", str(port)]
    process = Process(_spawn(argv, log_path), port, log_path)
    wait_until(
        lambda: process.proc.poll() is None and http_ok(f"http://127.0.0.1:{port}/ping"),
        30.0,
        message="the TorchServe stand-in",
    )
    return process


@pytest.fixture(scope="session")
def torchserve_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, Process]]:
    """Two replicas of the TorchServe stand-in (see `torchserve_standin.py` for why a stand-in)."""
    log_dir = tmp_path_factory.mktemp("torchserve")
    first = _start_standin(log_dir)
    second = _start_standin(log_dir)
    yield first, second
    first.stop()
    second.stop()

"""Two OpenAI-compatible stand-in servers (tests/llm/openai_standin.py) as real processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Process, _spawn, free_port, http_ok, wait_until

STANDIN = Path(__file__).with_name("openai_standin.py")


def start_standin(name: str, log_dir: Path) -> Process:
    port = free_port()
    log_path = log_dir / f"openai-{name}-{port}.log"
    proc = _spawn([sys.executable, str(STANDIN), name, str(port)], log_path)
    process = Process(proc, port, log_path)
    try:
        wait_until(
            lambda: proc.poll() is None and http_ok(f"http://127.0.0.1:{port}/v1/models"),
            30.0,
            message=f"openai stand-in {name}",
        )
    except TimeoutError:
        process.kill()
        raise
    return process


@pytest.fixture(scope="session")
def llm_a(session_logs: Path) -> Iterator[Process]:
    process = start_standin("llm-a", session_logs)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def llm_b(session_logs: Path) -> Iterator[Process]:
    process = start_standin("llm-b", session_logs)
    yield process
    process.stop()

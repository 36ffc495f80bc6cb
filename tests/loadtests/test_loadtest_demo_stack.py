"""The stack around a run: used as found, or started, awaited and stopped with nothing left behind.

A stand-in stack (a small Python process) plays the demo: it serves /readyz on a free port and
starts a child in a session of its own, as the demo does with its workers and gateway.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from loadtests.arguments import DEMO_ADMIN, DEMO_HOST
from loadtests.demo_stack import DemoStack, StackUnavailable, demo_launcher
from tests.support.processes import Process, free_port

# argv[1]: port; argv[2]: "ignore" to ignore SIGTERM (a stack that hangs on stop).
STAND_IN = """
import http.server, os, signal, subprocess, sys
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print("child", child.pid, os.environ.get("STAND_IN_MARK"), flush=True)

class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""
# Short grace so that a stack ignoring SIGTERM is killed quickly in the test.
STOP_TIMEOUT_S = 0.5


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("on_sigterm", ["exit", "ignore"])
def test_a_started_stack_is_awaited_then_stopped_with_its_detached_children(
    tmp_path: Path, on_sigterm: str
) -> None:
    port = free_port()
    log = tmp_path / "stack.log"
    stack = DemoStack(
        f"http://127.0.0.1:{port}",
        log,
        lambda: [sys.executable, "-c", STAND_IN, str(port), on_sigterm],
        {"STAND_IN_MARK": "from-the-runner"},
        stop_timeout_s=STOP_TIMEOUT_S,
    )
    with stack:
        assert stack.started
        _, pid, mark = log.read_text().split()
        assert mark == "from-the-runner"
        child_pid = int(pid)
        assert not gone(child_pid)
        parent_pid = psutil.Process(child_pid).ppid()
    assert not stack.started
    # The child was in a session of its own: only the runner's bookkeeping could find it.
    assert wait_gone(child_pid), "the stack's detached child outlived the run"
    assert wait_gone(parent_pid) or parent_pid == 1


def test_a_ready_stack_is_used_as_found(upstream_a: Process, tmp_path: Path) -> None:
    def refuse() -> list[str]:
        raise AssertionError("nothing should be started")

    # The test upstream answers 200 on any path, /readyz included.
    with DemoStack(f"http://127.0.0.1:{upstream_a.port}", tmp_path / "log", refuse) as stack:
        assert not stack.started
    assert upstream_a.proc.poll() is None


def test_a_stack_that_exits_early_is_reported_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('no models here'); sys.exit(3)"]
    stack = DemoStack(f"http://127.0.0.1:{free_port()}", tmp_path / "log", lambda: command)
    with pytest.raises(StackUnavailable, match=r"exited with status 3:\nno models here"), stack:
        pass


def test_only_the_demo_addresses_may_start_the_demo() -> None:
    assert demo_launcher(DEMO_HOST, DEMO_ADMIN, allow_start=True)()[-2:] == ["-m", "gateway.demo"]
    with pytest.raises(StackUnavailable, match="--no-start"):
        demo_launcher(DEMO_HOST, DEMO_ADMIN, allow_start=False)()
    with pytest.raises(StackUnavailable, match="only the demo stack"):
        demo_launcher("http://127.0.0.1:18080", DEMO_ADMIN, allow_start=True)()

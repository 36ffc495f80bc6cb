"""The demo stack for a load test: used as found when it answers, else started and stopped around the run.

`python -m gateway.demo` runs the workers and the gateway and stops them in order on SIGTERM. It
starts here in its own process group, with its output in a log file. Its children run in sessions of
their own (so that a terminal's Ctrl-C reaches the demo first), so they are also looked up as
descendants while the stack runs, and any left after the demo stopped are killed: a load test leaves
no process behind, even when the demo itself had to be killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import psutil  # type: ignore[import-untyped]

from loadtests.arguments import DEMO_ADMIN, DEMO_HOST

ROOT = Path(__file__).resolve().parents[1]
# The first start trains the demo models and the workers load them: a minute or two on a small machine.
READY_TIMEOUT_S = 240.0
# The demo gives each of its processes 15 s to stop gracefully; this leaves room for all of them.
STOP_TIMEOUT_S = 40.0
# Readiness polls: quick enough not to add noticeable delay, rare enough to cost nothing.
POLL_INTERVAL_S = 0.2
# A readiness probe of a local listener answers in milliseconds; beyond this it is not ready.
PROBE_TIMEOUT_S = 1.0
# Lines of the demo's log shown when it fails to start.
LOG_TAIL_LINES = 30


def _alive(process: psutil.Process) -> bool:
    # A killed process that nobody reaps (its parent is gone) stays a zombie: dead all the same.
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_dead(processes: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(process) for process in processes) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)


class StackUnavailable(RuntimeError):
    """The gateway is not answering and cannot be started here."""


def is_ready(admin_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{admin_url}/readyz", timeout=PROBE_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def demo_launcher(host: str, admin: str, allow_start: bool) -> Callable[[], list[str]]:
    """What starts the stack for these addresses: the demo for its own, nothing for any other."""

    def command() -> list[str]:
        if not allow_start:
            raise StackUnavailable(f"nothing ready at {admin}/readyz, and --no-start was given")
        if (host, admin) != (DEMO_HOST, DEMO_ADMIN):
            raise StackUnavailable(
                f"nothing ready at {admin}/readyz; only the demo stack ({DEMO_HOST}, admin "
                f"{DEMO_ADMIN}) is started automatically"
            )
        return [sys.executable, "-m", "gateway.demo"]

    return command


class DemoStack:
    """`with DemoStack(admin, log_path, launcher) as stack:` uses the stack answering at `admin`, or
    starts `launcher()` (which raises StackUnavailable when nothing may be started), with
    `environment` added to its environment, and stops it on exit. `stack.started` says whether this
    run started it."""

    def __init__(
        self,
        admin: str,
        log_path: Path,
        launcher: Callable[[], Sequence[str]],
        environment: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self._admin = admin
        self._log_path = log_path
        self._launcher = launcher
        self._environment = dict(environment or {})
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._descendants: dict[int, psutil.Process] = {}

    @property
    def started(self) -> bool:
        return self._process is not None

    def __enter__(self) -> DemoStack:
        if not is_ready(self._admin):
            self._start(list(self._launcher()))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self, command: list[str]) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **self._environment},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            self._note_descendants(process)
            if is_ready(self._admin):
                self._note_descendants(process)
                return
            if process.poll() is not None:
                raise StackUnavailable(
                    f"the demo exited with status {process.returncode}:\n{self._log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)
        raise StackUnavailable(f"the demo was not ready within {READY_TIMEOUT_S:.0f}s:\n{self._log_tail()}")

    def _note_descendants(self, process: subprocess.Popen[bytes]) -> None:
        """Remember the demo's processes now, so that they can be found after the demo is gone."""
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            self._descendants.setdefault(child.pid, child)

    def _log_tail(self) -> str:
        lines = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def stop(self) -> None:
        """SIGTERM to the demo (which stops its children in order), SIGKILL after the grace period,
        then SIGKILL for any descendant still running. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            self._note_descendants(process)
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        survivors = []
        for child in self._descendants.values():
            try:
                if child.is_running():
                    child.kill()
                    survivors.append(child)
            except psutil.NoSuchProcess:
                continue
        _wait_dead(survivors, self._stop_timeout_s)
        self._descendants.clear()

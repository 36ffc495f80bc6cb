"""One gateway process run by the supervisor: how it is started, read and asked.

The process is `turnout run` itself, told with `--admin-socket` that it is one of several: it binds
the data port with SO_REUSEPORT beside its siblings and serves its admin API on a private Unix
socket, which only the supervisor reads. Its stderr (the log) passes through the supervisor, which
keeps the last lines to say why a process that died at start did so; its stdout (the access log)
goes straight to the supervisor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path

import aiohttp

# Lines of a process's log kept to explain its exit: enough for a traceback's last frames.
TAIL_LINES = 20
# The longest a supervisor waits for one process's admin API to answer: the event loop of a busy
# process answers within milliseconds, so anything slower counts as not answering.
ADMIN_TIMEOUT_S = 2.0
# Linux prctl option that signals a child when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: a supervisor killed outright (SIGKILL, OOM) takes its
    processes with it, each draining as on SIGTERM, instead of leaving them serving unsupervised."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class GatewayChild:
    """Slot `index` of the supervisor: the process running in it now, restarted into the same slot."""

    def __init__(self, index: int, config_path: Path, socket_dir: Path, log_level: str, token: str) -> None:
        self.index = index
        self.socket_path = str(socket_dir / f"process-{index}.sock")
        self._argv = [
            sys.executable,
            "-m",
            "gateway.cli",
            "run",
            "--config",
            str(config_path),
            "--log-level",
            log_level,
            "--no-watch",  # the supervisor watches the file, checks it once and tells every process
            "--admin-socket",
            self.socket_path,
        ]
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = False
        self.started_at = 0.0
        self.restarts = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._relay: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # a socket left by the process this one replaces
        self.ready = False
        self.tail.clear()
        self.proc = await asyncio.create_subprocess_exec(
            *self._argv, stderr=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent
        )
        self.started_at = time.monotonic()
        self._relay = asyncio.create_task(self._relay_log(self.proc))

    async def _relay_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        out = sys.stderr.buffer
        prefix = f"[process {self.index} pid {proc.pid}] ".encode()
        async for line in proc.stderr:
            out.write(prefix + line)
            out.flush()
            self.tail.append(line.decode(errors="replace").rstrip())

    async def wait(self) -> int:
        """Wait for the process to exit and for its last log lines; returns its exit status."""
        assert self.proc is not None
        status = await self.proc.wait()
        if self._relay is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
        self.ready = False
        return status

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def why(self, status: int) -> str:
        """The exit status in words, with the process's last log line when it left one."""
        how = (
            f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
        )
        last = next((line for line in reversed(self.tail) if line.strip()), "")
        return f"{how}: {last}" if last else how

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str | None = None
    ) -> tuple[int, bytes, str]:
        """Ask this process's admin API; returns status, body and content type. Raises OSError or
        TimeoutError when the process does not answer (starting, restarting, or stuck)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path),
                timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S),
            )
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(
                method, f"http://localhost{path}", data=body or None, headers=headers
            ) as response:
                return response.status, await response.read(), response.content_type
        except aiohttp.ClientError as exc:
            raise OSError(f"process {self.index} did not answer: {exc}") from exc

    async def is_ready(self) -> bool:
        try:
            status, _, _ = await self.request("GET", "/readyz")
        except (OSError, TimeoutError):
            return False
        return status == 200

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""`turnout run --processes N`: N gateway processes on one port, under one supervisor.

Each process is a whole gateway (`gateway.server.Gateway`) that binds the data port with
SO_REUSEPORT, so the kernel spreads new connections across them and no request passes through the
supervisor. The supervisor only:

- checks the config once and the ports before starting anything, so a mistake is one clear line;
- starts the processes and waits until each is ready; one that dies before it is ever ready stops
  the whole start with its reason (a config that cannot start will not start on a retry either);
- restarts a process that dies later, after a backoff that doubles while it keeps dying young, and
  gives up (stopping everything) after `MAX_QUICK_FAILURES` deaths in a row before readiness;
- on SIGHUP (or a change of the config file) loads the config again, refuses a bad one before any
  process hears of it, and otherwise tells every process to reload;
- on SIGTERM or SIGINT tells every process to drain and stop, and kills what is left after the
  drain timeout and a grace period;
- serves the one admin port, which reads and sums the processes' private admin APIs
  (`gateway.supervisor_admin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.config import ConfigError, GatewayConfig
from gateway.config.errors import one_line
from gateway.loading import load_gateway_config
from gateway.supervisor_admin import build_supervisor_admin
from gateway.supervisor_process import GatewayChild

log = logging.getLogger("turnout.supervisor")

# The longest one process may take from exec to ready: imports, config build and health checks on a
# loaded 2-core machine take a few seconds; a process slower than this is treated as failing.
START_TIMEOUT_S = 60.0
# How often readiness is polled while a process starts.
READY_POLL_S = 0.05
# Restart backoff: the first restart waits BACKOFF_BASE_S, doubling per quick death up to
# BACKOFF_MAX_S, so a process that crashes in a loop costs little CPU and floods no log.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
# A process that served this long before dying is not crash-looping: its next restart is immediate.
STABLE_AFTER_S = 30.0
# Deaths in a row before readiness after which restarting is given up as hopeless.
MAX_QUICK_FAILURES = 5
# Added to the config's drain timeout before the processes left are killed: time to close pools,
# flush the event store and exit after the last request.
STOP_GRACE_S = 5.0


class SupervisorError(Exception):
    """The processes could not be started, or kept running; the message says why."""


def usable_cpus() -> int:
    """CPUs this process may run on (cgroups and taskset included), which `processes: auto` uses."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_processes(requested: int | str) -> int:
    return usable_cpus() if requested == "auto" else int(requested)


def check_port_free(host: str, port: int, what: str) -> None:
    """Raise SupervisorError when something already listens on host:port. The processes bind with
    SO_REUSEPORT, which would otherwise fail one by one, or share a port held by a stranger."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc}"
            raise SupervisorError(f"{what} {host}:{port} {reason}") from None


class Supervisor:
    def __init__(
        self, config: GatewayConfig, config_path: Path, processes: int, *, watch: bool, log_level: str
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.count = processes
        self._watch = watch
        self._log_level = log_level
        self.children: list[GatewayChild] = []
        self.stopping = False
        self._failure: str | None = None
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT; raises SupervisorError when the processes cannot be kept up."""
        listen, admin = self.config.listen, self.config.admin
        check_port_free(listen.host, listen.port, "listen")
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop_soon)
        loop.add_signal_handler(signal.SIGINT, self._stop_soon)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self._reload_and_log("SIGHUP")))
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        socket_dir = Path(tempfile.mkdtemp(prefix="turnout-"))
        runner = web.AppRunner(build_supervisor_admin(self, admin.token), access_log=None)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, admin.host, admin.port).start()
            except OSError as exc:
                raise SupervisorError(f"admin {admin.host}:{admin.port} cannot be bound: {exc}") from None
            self.children = [
                GatewayChild(i, self.config_path, socket_dir, self._log_level, admin.token)
                for i in range(self.count)
            ]
            await self._start_all()
            log.info(
                "turnout supervisor: %d processes on %s:%d (pids %s), admin on %s:%d",
                self.count,
                listen.host,
                listen.port,
                ", ".join(str(child.pid) for child in self.children),
                admin.host,
                admin.port,
            )
            for child in self.children:
                self._spawn(self._keep_running(child))
            if self._watch:
                self._spawn(self._watch_config())
            await self._stopped.wait()
        finally:
            await self._stop_all()
            for task in self._tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for child in self.children:
                await child.close()
            await runner.cleanup()
            shutil.rmtree(socket_dir, ignore_errors=True)
        if self._failure is not None:
            raise SupervisorError(self._failure)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    def _stop_soon(self) -> None:
        self.stopping = True
        self._stopped.set()

    def _fail(self, reason: str) -> None:
        log.error("%s; stopping every process", reason)
        self._failure = reason
        self._stop_soon()

    async def _start_all(self) -> None:
        for child in self.children:
            await child.start()
        problems = await asyncio.gather(*(self._until_ready(child) for child in self.children))
        failed = [problem for problem in problems if problem is not None]
        if failed:
            raise SupervisorError("; ".join(failed))

    async def _until_ready(self, child: GatewayChild) -> str | None:
        """Wait until the child answers /readyz; returns why not when it exits or takes too long."""
        assert child.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.stopping:  # SIGTERM while starting: stop waiting, the processes are stopped next
                return None
            if child.proc.returncode is not None:
                return f"process {child.index} {child.why(await child.wait())}"
            if await child.is_ready():
                child.ready = True
                return None
            await asyncio.sleep(READY_POLL_S)
        return f"process {child.index} was not ready after {START_TIMEOUT_S:.0f}s"

    async def _keep_running(self, child: GatewayChild) -> None:
        """Restart the child whenever it dies, until the supervisor stops or gives up on it."""
        quick_failures = 0
        while True:
            status = await child.wait()
            if self.stopping:
                return
            lived = time.monotonic() - child.started_at
            quick_failures = quick_failures + 1 if lived < STABLE_AFTER_S else 0
            if quick_failures >= MAX_QUICK_FAILURES:
                self._fail(
                    f"process {child.index} {child.why(status)}; it died {quick_failures} times in a "
                    "row soon after starting, so it is not restarted again"
                )
                return
            delay = (
                min(BACKOFF_BASE_S * 2 ** max(quick_failures - 1, 0), BACKOFF_MAX_S)
                if quick_failures
                else 0.0
            )
            log.warning(
                "process %d (pid %s) %s; restarting it in %.1fs",
                child.index,
                child.pid,
                child.why(status),
                delay,
            )
            await asyncio.sleep(delay)
            if self.stopping:
                return
            child.restarts += 1
            await child.start()
            problem = await self._until_ready(child)
            if problem is None:
                log.info("process %d restarted (pid %s)", child.index, child.pid)
            elif child.proc is not None and child.proc.returncode is None:
                child.signal(signal.SIGKILL)  # started but never ready: replace it

    async def reload(self, source: str) -> list[str]:
        """Check the config file; tell every process to reload only when it loads. Returns the
        errors that refused it (empty when every process was told)."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(load_gateway_config, self.config_path)
            except ConfigError as err:
                return err.errors
            if (config.processes, config.listen, config.admin) != (
                self.config.processes,
                self.config.listen,
                self.config.admin,
            ):
                log.warning("config reload (%s): processes/listen/admin changes need a restart", source)
            # A process still starting reads the file as it starts; and before its handlers are in
            # place, SIGHUP would end it.
            for child in self.children:
                if child.ready:
                    child.signal(signal.SIGHUP)
            return []

    def _reopen_logs(self) -> None:
        """SIGUSR1 after log rotation: every ready process reopens its access log (one still
        starting has no handler yet, and SIGUSR1 would end it; it opens the file by name anyway)."""
        for child in self.children:
            if child.ready:
                child.signal(signal.SIGUSR1)

    async def _reload_and_log(self, source: str) -> None:
        errors = await self.reload(source)
        if errors:
            log.error(
                "config reload (%s) refused before any process reloaded, keeping the running config: %s",
                source,
                "; ".join(one_line(error) for error in errors),
            )
        else:
            log.info("config reload (%s): checked, every process told to reload", source)

    async def _watch_config(self) -> None:
        """Reload when the config file changes (the directory is watched: editors replace files)."""
        from watchfiles import awatch

        target = os.path.abspath(self.config_path)  # noqa: ASYNC240
        async for changes in awatch(os.path.dirname(target)):
            # A mounted Kubernetes ConfigMap changes by swapping its `..data` link, not the file's path.
            if any(
                os.path.abspath(changed) == target or os.path.basename(changed) == "..data"  # noqa: ASYNC240
                for _, changed in changes
            ):
                await self._reload_and_log("file change")

    async def _stop_all(self) -> None:
        """SIGTERM every process (each drains), then SIGKILL those left after the drain timeout."""
        self.stopping = True
        running = [
            child for child in self.children if child.proc is not None and child.proc.returncode is None
        ]
        for child in running:
            child.signal(signal.SIGTERM)
        if not running:
            return
        limit = self.config.listen.drain_timeout + STOP_GRACE_S
        waits = [asyncio.ensure_future(child.wait()) for child in running]
        _, pending = await asyncio.wait(waits, timeout=limit)
        if pending:
            log.warning("%d processes still running %.0fs after SIGTERM; killing them", len(pending), limit)
            for child in running:
                child.signal(signal.SIGKILL)
            await asyncio.wait(pending)

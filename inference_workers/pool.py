"""`turnout workers`: run N worker processes over one repository and keep them running.

Worker i listens on base_port + i (and grpc_base_port + i); on a host with GPUs, worker i gets GPU
i mod n through CUDA_VISIBLE_DEVICES. A worker that exits unasked is restarted after a delay that
doubles with each quick crash (capped), and resets once a worker has stayed up for a while, so a
crash loop does not spin while a one-off crash costs little. A worker counts as live once its
`/v2/health/ready` answers 200; the live set is announced to a file and/or a gateway's admin API.

On SIGTERM or SIGINT every worker is first withdrawn (announced not ready, deregistered), then sent
SIGTERM so it finishes requests in flight; workers still running after the grace period are killed.
Workers run with --exit-with-parent, so even a pool killed outright leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from inference_workers.announce import AnnouncedWorker, Registrar, write_announce_file
from inference_workers.device import visible_gpus

log = logging.getLogger(__name__)

# Readiness is polled this often while a worker starts: a tenth of a second adds little to a start
# that takes one or two, and costs nothing worth mentioning.
READY_POLL_S: Final = 0.1
# A worker that stayed up this long was healthy; its next crash starts the backoff from scratch.
STABLE_AFTER_S: Final = 60.0
# Time beyond the workers' own grace period to wait for them to exit before killing them.
EXIT_MARGIN_S: Final = 5.0
_WILDCARD_HOSTS: Final = ("", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    model_repository: Path
    replicas: int | None = None
    """None: one per GPU, or 1 without GPUs."""
    base_port: int = 9001
    grpc_base_port: int | None = None
    host: str = "127.0.0.1"
    device: str = "auto"
    models: str | None = None
    max_loaded_models: int | None = None
    announce: Path | None = None
    register_url: str | None = None
    register_token: str | None = None
    shutdown_grace_s: float = 30.0
    restart_backoff_s: float = 0.5
    max_restart_backoff_s: float = 30.0
    log_level: str = "INFO"


@dataclass(slots=True, eq=False)
class Replica:
    index: int
    http_port: int
    grpc_port: int | None
    gpu: str | None
    address: str
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    restarts: int = 0
    registered: bool = False


class WorkerPool:
    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        gpus = visible_gpus() if settings.device != "cpu" else []
        count = settings.replicas or max(len(gpus), 1)
        announce_host = "127.0.0.1" if settings.host in _WILDCARD_HOSTS else settings.host
        self.replicas = [
            Replica(
                index=index,
                http_port=settings.base_port + index,
                grpc_port=None if settings.grpc_base_port is None else settings.grpc_base_port + index,
                gpu=gpus[index % len(gpus)] if gpus else None,
                address=f"{announce_host}:{settings.base_port + index}",
            )
            for index in range(count)
        ]
        self._announce_host = announce_host
        self._stopping = asyncio.Event()
        self._supervisors: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._registrar: Registrar | None = None
        self._resources = contextlib.AsyncExitStack()
        self._announced: list[AnnouncedWorker] | None = None

    async def __aenter__(self) -> WorkerPool:
        # A probe is a local HTTP GET; a worker that takes a second to answer it is not ready.
        timeout = aiohttp.ClientTimeout(total=1.0)
        self._session = await self._resources.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        if self.settings.register_url:
            registrar = Registrar(self.settings.register_url, self.settings.register_token)
            self._registrar = await self._resources.enter_async_context(registrar)
        self._publish()
        self._supervisors = [
            asyncio.create_task(self._supervise(replica), name=f"worker {replica.index}")
            for replica in self.replicas
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.set()
        for replica in self.replicas:
            self._withdraw(replica)
        self._publish()
        for replica in self.replicas:
            _signal(replica, signal.SIGTERM)
        deadline = self.settings.shutdown_grace_s + EXIT_MARGIN_S
        _, pending = (
            await asyncio.wait(self._supervisors, timeout=deadline) if self._supervisors else ((), ())
        )
        if pending:
            for replica in self.replicas:
                _signal(replica, signal.SIGKILL)
            await asyncio.wait(pending)
        await self._resources.aclose()
        self._publish()

    async def _supervise(self, replica: Replica) -> None:
        backoff = self.settings.restart_backoff_s
        while not self._stopping.is_set():
            started = time.monotonic()
            replica.process = await self._spawn(replica)
            if self._stopping.is_set():
                _signal(replica, signal.SIGTERM)  # the pool began stopping while this one started
            self._publish()
            watcher = asyncio.create_task(self._watch_ready(replica))
            status = await replica.process.wait()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._withdraw(replica)
            replica.process = None
            self._publish()
            if self._stopping.is_set():
                log.info("worker %d (%s) stopped with status %d", replica.index, replica.address, status)
                return
            if time.monotonic() - started >= STABLE_AFTER_S:
                backoff = self.settings.restart_backoff_s
            replica.restarts += 1
            log.warning(
                "worker %d (%s) exited with status %d; restart %d in %.1fs",
                replica.index,
                replica.address,
                status,
                replica.restarts,
                backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self.settings.max_restart_backoff_s)

    async def _spawn(self, replica: Replica) -> asyncio.subprocess.Process:
        settings = self.settings
        command = [
            sys.executable,
            "-m",
            "inference_workers.worker",
            "--model-repository",
            str(settings.model_repository),
            "--http-port",
            str(replica.http_port),
            "--host",
            settings.host,
            "--shutdown-grace",
            str(settings.shutdown_grace_s),
            "--log-level",
            settings.log_level,
            "--exit-with-parent",
        ]
        if replica.grpc_port is not None:
            command += ["--grpc-port", str(replica.grpc_port)]
        if settings.models:
            command += ["--models", settings.models]
        if settings.max_loaded_models is not None:
            command += ["--max-loaded-models", str(settings.max_loaded_models)]
        env = dict(os.environ)
        if replica.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = replica.gpu
            command += ["--device", "cuda" if settings.device == "auto" else settings.device]
        else:
            command += ["--device", "cpu" if settings.device == "auto" else settings.device]
        process = await asyncio.create_subprocess_exec(*command, env=env, stdin=asyncio.subprocess.DEVNULL)
        log.info("started worker %d (%s) as pid %d", replica.index, replica.address, process.pid)
        return process

    async def _watch_ready(self, replica: Replica) -> None:
        url = f"http://{self._announce_host}:{replica.http_port}/v2/health/ready"
        while True:
            if await self._probe(url):
                replica.ready = True
                self._publish()
                if self._registrar is not None:
                    self._registrar.register(replica.address, replica.grpc_port)
                    replica.registered = True
                return
            await asyncio.sleep(READY_POLL_S)

    async def _probe(self, url: str) -> bool:
        if self._session is None:
            return False
        try:
            async with self._session.get(url) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def _withdraw(self, replica: Replica) -> None:
        replica.ready = False
        if replica.registered and self._registrar is not None:
            self._registrar.deregister(replica.address)
        replica.registered = False

    def _publish(self) -> None:
        if self.settings.announce is None:
            return
        workers = [
            AnnouncedWorker(
                address=replica.address,
                grpc=None if replica.grpc_port is None else f"{self._announce_host}:{replica.grpc_port}",
                pid=replica.process.pid,
                ready=replica.ready,
            )
            for replica in self.replicas
            if replica.process is not None and replica.process.returncode is None
        ]
        if workers == self._announced:
            return
        try:
            write_announce_file(self.settings.announce, workers)
        except OSError as exc:
            log.error("cannot write %s: %s", self.settings.announce, exc)
            return
        self._announced = workers


def _signal(replica: Replica, signum: int) -> None:
    process = replica.process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


async def run_pool(settings: PoolSettings) -> int:
    """Run the pool until SIGTERM or SIGINT; returns the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with WorkerPool(settings):
        await stop.wait()
        log.info("stopping the pool")
    return 0

"""One worker process: the model repository behind an OIP v2 REST listener and a gRPC listener.

Start order: listeners first (so liveness answers while models load), then the models, then
readiness turns true. Stop order, on SIGTERM or SIGINT: readiness turns false and new inferences are
refused with 503, the listeners stop accepting and wait up to the grace period for requests in
flight, and only then are the models unloaded. With `exit_with_parent` the worker also stops when the
process that started it (the pool) dies, so a killed pool leaves no orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from inference_workers.device import Device
from inference_workers.gpu import gpu_collector
from inference_workers.grpc_service import create_grpc_server
from inference_workers.metrics import WorkerMetrics
from inference_workers.repository import ModelRepository
from inference_workers.rest import create_app
from inference_workers.selection import ModelSelection
from inference_workers.served_model import WorkerLoad
from inference_workers.service import SERVER_NAME, InferenceService

log = logging.getLogger(__name__)

# How often an orphan check looks at its parent: fast enough that a killed pool's workers are gone
# within a second, cheap enough (one getppid call) to be free.
PARENT_POLL_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    model_repository: Path
    http_port: int
    grpc_port: int | None = None
    """None: no gRPC listener."""
    host: str = "127.0.0.1"
    device: Device = field(default_factory=lambda: Device("cpu"))
    visible_gpus: int = 0
    models: ModelSelection = field(default_factory=ModelSelection)
    max_loaded_models: int | None = None
    shutdown_grace_s: float = 30.0
    exit_with_parent: bool = False
    name: str = SERVER_NAME


class Worker:
    """The running worker; an async context manager that starts and stops everything it owns."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.load = WorkerLoad()
        self.repository = ModelRepository(
            settings.model_repository,
            device=settings.device,
            visible_gpus=settings.visible_gpus,
            metrics=self.metrics,
            load=self.load,
            selection=settings.models,
            max_loaded=settings.max_loaded_models,
        )
        self.service = InferenceService(self.repository, self.load, settings.name)
        self.http_port = 0
        self.grpc_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._grpc: Any = None
        self._gpu: Any = None

    async def __aenter__(self) -> Worker:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        settings = self.settings
        self.service.stopping = True  # not ready until the models are loaded
        self.metrics.watch_load(self.repository.samples)
        if settings.device.kind == "cuda":
            self._gpu = gpu_collector()
            if self._gpu is not None:
                self.metrics.watch(self._gpu)
        self._runner = web.AppRunner(
            create_app(self.service, self.metrics),
            shutdown_timeout=settings.shutdown_grace_s,
            access_log=None,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.host, settings.http_port)
        await site.start()
        self.http_port = _bound_port(self._runner)
        if settings.grpc_port is not None:
            self._grpc, self.grpc_port = create_grpc_server(self.service, settings.host, settings.grpc_port)
            await self._grpc.start()
        await self.repository.start()
        self.service.stopping = False
        log.info(
            "worker ready: http %s:%d grpc %s, device %s",
            settings.host,
            self.http_port,
            self.grpc_port if self.grpc_port is not None else "off",
            settings.device,
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.service.stopping = True
        grace = self.settings.shutdown_grace_s
        stops = []
        if self._grpc is not None:
            stops.append(self._grpc.stop(grace))
        if self._runner is not None:
            stops.append(self._runner.cleanup())
        await asyncio.gather(*stops, return_exceptions=True)
        await self.repository.stop()
        if self._gpu is not None:
            self._gpu.close()
        log.info("worker stopped")


async def serve(settings: WorkerSettings) -> int:
    """Run a worker until SIGTERM or SIGINT (or its parent's death); returns the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watchdog = asyncio.create_task(_watch_parent(stop)) if settings.exit_with_parent else None
    try:
        async with Worker(settings):
            await stop.wait()
            log.info("stopping: finishing requests in flight (grace %.0fs)", settings.shutdown_grace_s)
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
    return 0


async def _watch_parent(stop: asyncio.Event) -> None:
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            log.warning("parent process %d is gone; stopping", parent)
            stop.set()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise OSError("the HTTP listener has no bound address")

"""One loaded model version: its backend behind a bounded executor, with live load counters.

Inference runs on the model's own thread pool of `instance_count` threads, so the event loop (health
checks, metadata, other models) stays responsive while a model computes. A semaphore of the same
size admits requests: those waiting on it are the queue depth the worker reports, those holding it
are in flight. A slot is released when the backend call really ends, not when the awaiting request
is cancelled, so a client that goes away cannot make the counts lie or overfill the executor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.core.errors import ServiceUnavailable
from inference_workers.backends.base import Backend
from inference_workers.metrics import LoadSample, ModelMetrics
from inference_workers.signature import Signature


class WorkerLoad:
    """Totals across every model of the worker, for the per-response load headers."""

    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.waiting = 0
        self.running = 0


class ServedModel:
    __slots__ = (
        "_backend",
        "_closing",
        "_executor",
        "_idle",
        "_load",
        "_metrics",
        "_slots",
        "name",
        "running",
        "signature",
        "version",
        "waiting",
    )

    def __init__(
        self,
        name: str,
        version: int,
        backend: Backend,
        signature: Signature,
        instance_count: int,
        metrics: ModelMetrics,
        load: WorkerLoad,
    ) -> None:
        self.name = name
        self.version = version
        self.signature = signature
        self._backend = backend
        self._closing = False
        self._executor = ThreadPoolExecutor(
            max_workers=instance_count, thread_name_prefix=f"{name}-v{version}"
        )
        self._slots = asyncio.Semaphore(instance_count)
        self._metrics = metrics
        self._load = load
        self._idle = asyncio.Event()
        self._idle.set()
        self.waiting = 0
        self.running = 0

    async def infer(
        self, inputs: Mapping[str, Any], outputs: Sequence[str], batch_size: int
    ) -> dict[str, Any]:
        """Run the backend on `inputs` in the executor once a slot is free."""
        if self._closing:
            raise ServiceUnavailable(f"model '{self.name}' version {self.version} is being unloaded")
        self._idle.clear()
        self.waiting += 1
        self._load.waiting += 1
        try:
            await self._slots.acquire()
        except BaseException:
            self._leave_queue()
            self._mark_idle_if_done()
            raise
        self._leave_queue()
        self.running += 1
        self._load.running += 1
        self._metrics.batch_size.observe(batch_size)
        call = asyncio.get_running_loop().run_in_executor(self._executor, self._timed_run, inputs, outputs)
        call.add_done_callback(self._release)
        return await asyncio.shield(call)

    def sample(self) -> LoadSample:
        return LoadSample(self.name, str(self.version), self.waiting, self.running)

    async def close(self) -> None:
        """Wait for queued and running inferences to finish, then release the backend."""
        self._closing = True
        await self._idle.wait()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _timed_run(self, inputs: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result = self._backend.run(inputs, outputs)
        except BaseException:
            self._metrics.failed.inc()
            raise
        self._metrics.latency.observe(time.monotonic() - started)
        self._metrics.succeeded.inc()
        return result

    def _leave_queue(self) -> None:
        self.waiting -= 1
        self._load.waiting -= 1

    def _release(self, call: asyncio.Future[dict[str, Any]]) -> None:
        if not call.cancelled():
            call.exception()  # retrieved here so an abandoned call does not log "never retrieved"
        self.running -= 1
        self._load.running -= 1
        self._slots.release()
        self._mark_idle_if_done()

    def _mark_idle_if_done(self) -> None:
        if self.waiting == 0 and self.running == 0:
            self._idle.set()

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        self._backend.close()

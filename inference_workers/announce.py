"""How the pool tells others which workers are live: a JSON file, and a gateway's admin API.

The file is rewritten whole, through a temporary file and a rename, every time the set changes, so a
reader never sees half of it. Registration with a gateway is best effort: calls go out one at a time
from a queue, are retried with backoff when the gateway is down or failing, are dropped (with a log
line) when it refuses them, and never raise into the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

log = logging.getLogger(__name__)

# A gateway that is restarting takes a few seconds; five tries doubling from 0.2 s cover about six.
REGISTER_ATTEMPTS: Final = 5
REGISTER_FIRST_DELAY_S: Final = 0.2
# An admin call is a map update on the gateway; two seconds without an answer means it is stuck.
REGISTER_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class AnnouncedWorker:
    address: str
    grpc: str | None
    pid: int | None
    ready: bool


def write_announce_file(path: Path, workers: Sequence[AnnouncedWorker]) -> None:
    """Atomically replace `path` with `{"endpoints": [...]}`."""
    document = {
        "endpoints": [
            {"address": worker.address, "grpc": worker.grpc, "pid": worker.pid, "ready": worker.ready}
            for worker in workers
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Registrar:
    """POSTs `{"address": ..., "grpc_port": ...}` to `url` when a worker is ready (`grpc_port` when
    it serves gRPC, on the same host: the gateway sends it gRPC calls and gRPC health checks there),
    DELETEs `url/address` when it stops.

    Use as an async context manager; on exit it finishes what is queued within `drain_s`."""

    def __init__(self, url: str, token: str | None = None, drain_s: float = 5.0) -> None:
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._drain_s = drain_s
        self._queue: asyncio.Queue[tuple[str, str, int | None]] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._sender: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Registrar:
        timeout = aiohttp.ClientTimeout(total=REGISTER_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)
        self._sender = asyncio.create_task(self._send_all(), name="registrar")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self._drain_s)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._session is not None:
            await self._session.close()

    def register(self, address: str, grpc_port: int | None = None) -> None:
        self._queue.put_nowait(("POST", address, grpc_port))

    def deregister(self, address: str) -> None:
        self._queue.put_nowait(("DELETE", address, None))

    async def _send_all(self) -> None:
        while True:
            method, address, grpc_port = await self._queue.get()
            try:
                await self._send(method, address, grpc_port)
            finally:
                self._queue.task_done()

    async def _send(self, method: str, address: str, grpc_port: int | None) -> None:
        delay = REGISTER_FIRST_DELAY_S
        for attempt in range(1, REGISTER_ATTEMPTS + 1):
            failure = await self._try(method, address, grpc_port)
            if failure is None:
                return
            retryable, detail = failure
            if attempt == REGISTER_ATTEMPTS or not retryable:
                log.warning("giving up on %s %s at %s: %s", method, address, self._url, detail)
                return
            await asyncio.sleep(delay)
            delay *= 2

    async def _try(self, method: str, address: str, grpc_port: int | None) -> tuple[bool, str] | None:
        """None on success, else whether a retry may help and what went wrong."""
        if self._session is None:
            return False, "registrar not started"
        # Both calls say they send JSON: the admin API refuses calls that change state otherwise.
        payload: dict[str, Any] = {}
        if method == "POST":
            payload["address"] = address
            if grpc_port is not None:
                payload["grpc_port"] = grpc_port
        request: dict[str, Any] = {"json": payload}
        url = self._url if method == "POST" else f"{self._url}/{address}"
        try:
            async with self._session.request(method, url, **request) as response:
                if response.status < 300 or (method == "DELETE" and response.status == 404):
                    log.info("%s %s at %s: %d", method, address, self._url, response.status)
                    return None
                # Client errors other than timeouts and rate limits will not change on a retry.
                retryable = response.status >= 500 or response.status in (408, 429)
                return retryable, f"status {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return True, f"{type(exc).__name__}: {exc}"

"""Pool discovery: follow the endpoints a worker pool announces in its JSON file.

`turnout workers --announce FILE` rewrites FILE atomically whenever a worker starts, becomes ready,
crashes or stops: `{"endpoints": [{"address": "127.0.0.1:8001", "ready": true, ...}]}`. This task
polls the file's modification time and, when it changes, makes the ready workers the members that
came from the file, keeping every other member (static endpoints, ones added through the admin API).
Polling a stat() twice a second is cheaper and more portable than a file watcher, and a reader of an
atomically replaced file never sees half of it.

A worker that serves gRPC too says where (`"grpc": "127.0.0.1:9001"`): `grpc_addresses` maps each
announced worker's HTTP address to it, and `on_grpc_change` is called when that map changes, so
gRPC calls and gRPC health checks reach the worker there (`gateway/grpc_ports.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import orjson

from routing.discovery.static import parse_address
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.grpc_address import join_host_port

_log = logging.getLogger(__name__)

# How often the file's modification time is checked: workers take far longer than this to start.
DEFAULT_POLL_INTERVAL_S = 0.5


def read_announced(path: Path) -> list[tuple[str, str | None]] | None:
    """(address, gRPC address or None) of the ready workers in an announce file; None when it is
    missing or unreadable."""
    try:
        document = orjson.loads(path.read_bytes())
        entries = document["endpoints"]
        return [
            (str(e["address"]), None if e.get("grpc") is None else str(e["grpc"]))
            for e in entries
            if e.get("ready", True)
        ]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


class PoolFileDiscovery:
    def __init__(
        self, endpoint_set: EndpointSet, path: Path, poll_interval: float = DEFAULT_POLL_INTERVAL_S
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be above zero")
        self._set = endpoint_set
        self._path = path
        self._interval = poll_interval
        self._mtime: float | None = None
        self._from_file: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.grpc_addresses: dict[str, str] = {}
        """The gRPC address of each announced worker that names one, by its HTTP address."""
        self.on_grpc_change: Callable[[], None] | None = None
        """Called after `grpc_addresses` changed (the gateway's gRPC address map follows it)."""

    def sync(self) -> bool:
        """Read the file if it changed and apply it; True when the members were updated."""
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            return False  # not written yet (the pool is starting) or gone: keep what we know
        if mtime == self._mtime:
            return False
        addresses = read_announced(self._path)
        if addresses is None:
            return False
        self._mtime = mtime
        announced: list[Endpoint] = []
        grpc: dict[str, str] = {}
        for address, grpc_address in addresses:
            try:
                host, port = parse_address(address)
            except ValueError:
                _log.warning("pool file %s: ignoring bad address %r", self._path, address)
                continue
            endpoint = Endpoint(host, port)
            announced.append(endpoint)
            if grpc_address is not None:
                try:
                    grpc_host, grpc_port = parse_address(grpc_address)
                except ValueError:
                    _log.warning("pool file %s: ignoring bad gRPC address %r", self._path, grpc_address)
                    continue
                if (grpc_host, grpc_port) != (host, port):
                    grpc[endpoint.address] = join_host_port(grpc_host, grpc_port)
        others = [ep for ep in self._set.endpoints if ep.address not in self._from_file]
        self._from_file = {ep.address for ep in announced}
        self._set.replace_all([*others, *announced])
        if grpc != self.grpc_addresses:
            self.grpc_addresses = grpc
            if self.on_grpc_change is not None:
                self.on_grpc_change()
        return True

    async def start(self) -> None:
        self.sync()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.sync()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

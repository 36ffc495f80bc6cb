"""Pool discovery: follow the endpoints a worker pool announces in its JSON file.

`turnout workers --announce FILE` rewrites FILE atomically whenever a worker starts, becomes ready,
crashes or stops: `{"endpoints": [{"address": "127.0.0.1:8001", "ready": true, ...}]}`. This task
polls the file's modification time and, when it changes, makes the ready workers the members that
came from the file, keeping every other member (static endpoints, ones added through the admin API).
Polling a stat() twice a second is cheaper and more portable than a file watcher, and a reader of an
atomically replaced file never sees half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import orjson

from routing.discovery.static import parse_address
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint

_log = logging.getLogger(__name__)

# How often the file's modification time is checked: workers take far longer than this to start.
DEFAULT_POLL_INTERVAL_S = 0.5


def read_announced(path: Path) -> list[str] | None:
    """The addresses of ready workers in an announce file; None when it is missing or unreadable."""
    try:
        document = orjson.loads(path.read_bytes())
        entries = document["endpoints"]
        return [str(e["address"]) for e in entries if e.get("ready", True)]
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
        for address in addresses:
            try:
                host, port = parse_address(address)
            except ValueError:
                _log.warning("pool file %s: ignoring bad address %r", self._path, address)
                continue
            announced.append(Endpoint(host, port))
        others = [ep for ep in self._set.endpoints if ep.address not in self._from_file]
        self._from_file = {ep.address for ep in announced}
        self._set.replace_all([*others, *announced])
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

"""The xDS resources of the running config, rebuilt when something they show changed.

A background loop compares `state_key` (a reload, a split's revision, an endpoint's health) every
`POLL_INTERVAL_S` and rebuilds the resources only when it moved; every ADS stream waits on `changed`
and pushes what differs. Polling a tuple keeps the splits, controllers and health checkers free of
any knowledge of xDS, at the cost of at most one interval of delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.mesh.xds_resources import TYPES, Resources, build_resources, state_key

if TYPE_CHECKING:
    from gateway.runtime import Runtime

# A canary step must reach xDS clients within a second; 100 ms leaves most of it to the clients,
# and comparing one small tuple ten times a second costs nothing measurable.
POLL_INTERVAL_S = 0.1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One build of every resource: messages, their serialized versions, and one version per type."""

    resources: Resources
    versions: dict[str, dict[str, str]]
    """type URL -> resource name -> version (a digest of the resource)."""
    type_versions: dict[str, str]
    """type URL -> version of the whole set of that type."""


def _digest(message: Any) -> str:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:16]


def make_snapshot(resources: Resources) -> Snapshot:
    versions = {kind: {name: _digest(msg) for name, msg in resources.get(kind, {}).items()} for kind in TYPES}
    type_versions = {
        kind: hashlib.sha256(repr(sorted(versions[kind].items())).encode()).hexdigest()[:16] for kind in TYPES
    }
    return Snapshot(resources, versions, type_versions)


class XdsSnapshots:
    """The current snapshot, and a signal for the streams when it changes."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self._key: tuple[object, ...] | None = None
        self.current = make_snapshot({})
        self.changed = asyncio.Event()
        """Set (and replaced by a fresh event) each time a new snapshot is installed."""
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> bool:
        """Rebuild when the state moved; True when a new snapshot was installed."""
        runtime = self._runtime()
        now = time.monotonic()
        key = state_key(runtime, now)
        if key == self._key:
            return False
        self._key = key
        self.current = make_snapshot(build_resources(runtime, now))
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()
        return True

    async def start(self) -> None:
        self.refresh()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            self.refresh()

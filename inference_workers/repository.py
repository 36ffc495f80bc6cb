"""The model repository: `DIR/<name>/<version>/model.yaml` plus artifacts, loaded and unloaded.

Every model version the worker may serve has a slot that records its state (READY, LOADING,
UNAVAILABLE) and why. At start the repository loads every version not marked `lazy`; a lazy
version loads on its first request, and so does one evicted by the cap on loaded models (least
recently used first). A version unloaded explicitly through the repository API stays unloaded
(503) until it is loaded again. A request without a version gets the highest loaded version, or
else the highest one that can load on demand. Loads run in a thread; a slot's lock makes
concurrent first requests share one load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.core.errors import NotFound, ServiceUnavailable
from inference_workers.backends import ModelLoadError, ModelSource, load_backend
from inference_workers.config import CONFIG_FILE, ModelConfig, ModelConfigError, read_model_config
from inference_workers.device import Device, DeviceError, parse_device
from inference_workers.metrics import LoadSample, WorkerMetrics
from inference_workers.selection import ModelSelection
from inference_workers.served_model import ServedModel, WorkerLoad
from inference_workers.signature import Signature

log = logging.getLogger(__name__)

READY: Final = "READY"
LOADING: Final = "LOADING"
UNAVAILABLE: Final = "UNAVAILABLE"


@dataclass(slots=True, eq=False)
class VersionSlot:
    """One model version: what is known about it, and the loaded model when there is one."""

    name: str
    version: int
    directory: Path
    config: ModelConfig | None = None
    config_error: str | None = None
    failure: str | None = None
    """Why the last load failed; cleared by an explicit load."""
    unloaded: bool = False
    """Unloaded by an operator: stays unloaded until loaded again."""
    evicted: bool = False
    """Unloaded to respect the cap on loaded models: loads again on its next request."""
    loading: bool = False
    served: ServedModel | None = None
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def label(self) -> str:
        return f"model '{self.name}' version {self.version}"

    @property
    def on_demand(self) -> bool:
        """Not loaded, but its next request may load it (lazy or evicted, and nothing wrong)."""
        if self.served is not None or self.unloaded or self.failure or self.config is None:
            return False
        return self.config.lazy or self.evicted

    @property
    def state(self) -> str:
        if self.served is not None:
            return READY
        return LOADING if self.loading else UNAVAILABLE

    @property
    def reason(self) -> str:
        """Why the version is not ready ("" when it is, or is loading)."""
        if self.served is not None or self.loading:
            return ""
        if self.unloaded:
            return "unloaded"
        if self.config_error:
            return f"bad {CONFIG_FILE}: {self.config_error}"
        if self.failure:
            return f"load failed: {self.failure}"
        if self.evicted:
            return "evicted (least recently used); loads on its next request"
        if self.config is not None and self.config.lazy:
            return "lazy: loads on its first request"
        return "not loaded"


class ModelRepository:
    def __init__(
        self,
        root: Path,
        *,
        device: Device,
        visible_gpus: int,
        metrics: WorkerMetrics,
        load: WorkerLoad,
        selection: ModelSelection | None = None,
        max_loaded: int | None = None,
    ) -> None:
        self.root = root
        self._device = device
        self._visible_gpus = visible_gpus
        self._metrics = metrics
        self._load = load
        self._selection = selection or ModelSelection()
        self._max_loaded = max_loaded
        self._models: dict[str, dict[int, VersionSlot]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Scan the repository and load every version that is not lazy."""
        self.rescan()
        for slot in list(self._slots()):
            if slot.config is None or slot.config.lazy:
                continue
            try:
                await self._load_slot(slot)
            except ServiceUnavailable as exc:
                log.error("%s", exc.message)

    async def stop(self) -> None:
        """Unload everything, waiting for in-flight inferences."""
        closing = [self._unload_slot(slot, "worker stopping") for slot in self._slots()]
        await asyncio.gather(*closing)
        await asyncio.gather(*self._closing)

    def rescan(self) -> None:
        """Pick up model versions added to or removed from the directory; re-read configs of the
        versions that are not loaded."""
        found: dict[str, dict[int, Path]] = {}
        for model_dir in _subdirectories(self.root):
            for version_dir in _subdirectories(model_dir):
                if version_dir.name.isdigit() and self._selection.includes(
                    model_dir.name, int(version_dir.name)
                ):
                    found.setdefault(model_dir.name, {})[int(version_dir.name)] = version_dir
        for name in list(self._models):
            for version, slot in list(self._models[name].items()):
                if slot.served is None and version not in found.get(name, {}):
                    del self._models[name][version]
            if not self._models[name]:
                del self._models[name]
        for name, versions in found.items():
            slots = self._models.setdefault(name, {})
            for version, directory in versions.items():
                if version not in slots:
                    slots[version] = VersionSlot(name, version, directory)
                slot = slots[version]
                if slot.served is None and not slot.loading:
                    self._read_config(slot)

    async def acquire(self, name: str, version: str | None) -> tuple[VersionSlot, ServedModel]:
        """The slot and loaded model that should answer a request, loading it on demand."""
        slot = self.resolve(name, version)
        served = slot.served
        if served is None:
            if slot.unloaded:
                raise ServiceUnavailable(
                    f"{slot.label} is unloaded; load it with POST /v2/repository/models/{name}/load"
                )
            if not slot.on_demand and not slot.loading:
                raise ServiceUnavailable(f"{slot.label} is not available: {slot.reason}")
            served = await self._load_slot(slot)
        slot.last_used = time.monotonic()
        return slot, served

    def resolve(self, name: str, version: str | None) -> VersionSlot:
        """The slot a name and optional version refer to (404 when there is none)."""
        versions = self._models.get(name)
        if not versions:
            raise NotFound(f"unknown model '{name}'")
        if version is None:
            ready = [slot for slot in versions.values() if slot.served is not None]
            candidates = ready or [slot for slot in versions.values() if slot.on_demand and not slot.unloaded]
            return max(candidates or versions.values(), key=lambda slot: slot.version)
        slot = versions.get(int(version)) if version.isdigit() else None
        if slot is None:
            raise NotFound(f"unknown version '{version}' of model '{name}' (versions: {self._listing(name)})")
        return slot

    def versions(self, name: str) -> list[VersionSlot]:
        return sorted(self._models.get(name, {}).values(), key=lambda slot: slot.version)

    async def load(self, name: str, version: str | None = None) -> list[VersionSlot]:
        """Load one version, or every version, of a model (rescanning the directory first)."""
        self.rescan()
        targets = [self.resolve(name, version)] if version is not None else self.versions(name)
        if not targets:
            raise NotFound(f"unknown model '{name}'")
        for slot in targets:
            slot.unloaded, slot.failure = False, None
            if slot.served is None:
                await self._load_slot(slot)
        return targets

    async def unload(self, name: str, version: str | None = None) -> list[VersionSlot]:
        targets = [self.resolve(name, version)] if version is not None else self.versions(name)
        if not targets:
            raise NotFound(f"unknown model '{name}'")
        for slot in targets:
            slot.unloaded = True
        await asyncio.gather(*(self._unload_slot(slot, "unloaded") for slot in targets))
        return targets

    def index(self) -> list[dict[str, str]]:
        """Triton-style repository index: name, version, state, reason for every version."""
        return [
            {"name": slot.name, "version": str(slot.version), "state": slot.state, "reason": slot.reason}
            for slot in sorted(self._slots(), key=lambda slot: (slot.name, slot.version))
        ]

    def is_ready(self) -> bool:
        """Every version meant to be loaded is loaded (lazy, evicted and unloaded ones excepted)."""
        return all(slot.served is not None or slot.on_demand or slot.unloaded for slot in self._slots())

    def samples(self) -> Iterator[LoadSample]:
        for slot in self._slots():
            if slot.served is not None:
                yield slot.served.sample()

    async def _load_slot(self, slot: VersionSlot) -> ServedModel:
        async with slot.lock:
            if slot.served is not None:
                return slot.served
            config = slot.config
            if config is None or slot.failure or slot.unloaded:
                raise ServiceUnavailable(f"{slot.label} is not available: {slot.reason}")
            slot.loading = True
            try:
                device = parse_device(
                    self._device_spec(config), self._visible_gpus, where=f"{slot.label} device"
                )
                source = ModelSource(slot.name, slot.version, slot.directory, config, device)
                backend = await asyncio.get_running_loop().run_in_executor(None, load_backend, source)
            except (ModelLoadError, DeviceError) as exc:
                slot.failure = str(exc)
                raise ServiceUnavailable(f"{slot.label} failed to load: {exc}") from None
            except Exception as exc:
                log.exception("loading %s failed", slot.label)
                slot.failure = repr(exc)
                raise ServiceUnavailable(f"{slot.label} failed to load: {exc!r}") from None
            finally:
                slot.loading = False
            metrics = self._metrics.for_model(slot.name, str(slot.version))
            signature = Signature(slot.label, config)
            slot.served = ServedModel(
                slot.name, slot.version, backend, signature, config.instance_count, metrics, self._load
            )
            slot.evicted, slot.failure, slot.last_used = False, None, time.monotonic()
            log.info("loaded %s on %s", slot.label, device)
        self._evict_over_cap(keep=slot)
        return slot.served

    async def _unload_slot(self, slot: VersionSlot, reason: str) -> None:
        async with slot.lock:
            served, slot.served = slot.served, None
        if served is not None:
            await served.close()
            log.info("unloaded %s (%s)", slot.label, reason)

    def _evict_over_cap(self, keep: VersionSlot) -> None:
        if self._max_loaded is None:
            return
        loaded = [slot for slot in self._slots() if slot.served is not None and slot is not keep]
        loaded.sort(key=lambda slot: slot.last_used)
        while len(loaded) + 1 > self._max_loaded and loaded:
            victim = loaded.pop(0)
            served, victim.served = victim.served, None
            victim.evicted = True
            if served is not None:
                task = asyncio.create_task(served.close(), name=f"close {victim.label}")
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            log.info("evicted %s to stay within %d loaded models", victim.label, self._max_loaded)

    def _read_config(self, slot: VersionSlot) -> None:
        try:
            slot.config, slot.config_error = read_model_config(slot.directory), None
        except ModelConfigError as exc:
            slot.config, slot.config_error = None, str(exc)

    def _device_spec(self, config: ModelConfig) -> str:
        return str(self._device) if config.device == "auto" else config.device

    def _slots(self) -> Iterator[VersionSlot]:
        for versions in self._models.values():
            yield from versions.values()

    def _listing(self, name: str) -> str:
        return ", ".join(str(slot.version) for slot in self.versions(name)) or "none"


def _subdirectories(path: Path) -> list[Path]:
    try:
        return sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    except OSError:
        return []

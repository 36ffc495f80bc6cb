"""The monitor filter: sample answered requests on the request path, study them off it.

The response phase does only this: a coin flip at `sample_rate`, and for a sampled 200 answer of a
monitored model, one `put_nowait` of references to the bodies the data path already buffered into a
bounded queue. A full queue drops the sample and counts it: monitoring never slows a request. One
background task per filter (started in `start`, cancelled in `stop`) decodes each sample and adds it
to its series, keyed by (model, version, experiment arm); a body it cannot read, or rows of the
wrong width, are counted as rejected with the reason kept for the report, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
from prometheus_client import Counter

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.core.filters import Filter, Response
from plugins.monitor.config import MonitorConfig
from plugins.monitor.decode import Observation, decode, joined_observations
from plugins.monitor.reference import Reference, ReferenceError, from_rows, load
from plugins.monitor.series import ModelSeries, ShapeMismatch, Thresholds

FILTER_NAME = "monitor"
SAMPLE_RESULTS = ("queued", "dropped", "rejected")
# The OIP v2 binary extension's header: the JSON part's length when raw tensors follow it.
_HEADER_LENGTH = "inference-header-content-length"

# Samples decoded in one step of the background task: about 5 ms of CPU, the most one step holds the
# event loop (and so delays requests) before it yields.
BATCH_SAMPLES = 64

_log = logging.getLogger("turnout.monitor")


@dataclass(frozen=True, slots=True)
class _Sample:
    model: str
    version: str | None
    arm: str | None
    request: bytes
    response: bytes
    header_length: str | None


class SeriesExporter(Protocol):
    """Where a started filter's series are exported (the registry's `MonitorCollector`)."""

    def attach(self, filter_: MonitorFilter) -> None: ...
    def detach(self, filter_: MonitorFilter) -> None: ...


class MonitorFilter(Filter):
    name = FILTER_NAME
    needs_request_body: ClassVar[bool] = True
    needs_response_body: ClassVar[bool] = True
    __slots__ = (
        "_base_dir",
        "_config",
        "_counters",
        "_exporter",
        "_queue",
        "_random",
        "_rate",
        "_task",
        "errors",
        "references",
        "series",
    )

    def __init__(
        self,
        config: MonitorConfig,
        base_dir: Path,
        counters: Mapping[str, Counter],
        exporter: SeriesExporter | None = None,
    ) -> None:
        self._config = config
        self._exporter = exporter
        self._base_dir = base_dir
        self._counters = counters
        self._rate = config.sample_rate
        # Sampling needs no cryptographic quality; a private generator keeps runs independent of others.
        self._random = random.Random().random
        self._queue: asyncio.Queue[_Sample] | None = None
        self._task: asyncio.Task[None] | None = None
        self.series: dict[tuple[str, str, str], ModelSeries] = {}
        self.references: dict[str, Reference | None] = {}
        self.errors: dict[str, str] = {}
        """The last error per model: an unusable reference, a body that could not be read."""

    @property
    def config(self) -> MonitorConfig:
        return self._config

    @property
    def thresholds(self) -> Thresholds:
        config = self._config
        return Thresholds(config.psi_warn, config.psi_alert, config.min_samples, config.window)

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        # Inference is a POST; metadata and health reads on the same route are not samples.
        if response.status != 200 or ctx.method != "POST" or self._random() >= self._rate:
            return
        model = ctx.model
        request, answer, queue = ctx.body, response.body, self._queue
        if model not in self._config.models or request is None or answer is None or queue is None:
            return
        sample = _Sample(model, ctx.model_version, ctx.arm, request, answer, ctx.headers.get(_HEADER_LENGTH))
        try:
            queue.put_nowait(sample)
        except asyncio.QueueFull:
            self._counters["dropped"].inc()
            return
        self._counters["queued"].inc()

    async def start(self) -> None:
        for model, options in self._config.models.items():
            self.references[model] = self._load_reference(model, options.reference, options.features)
        self._queue = asyncio.Queue(self._config.queue_size)
        self._task = asyncio.get_running_loop().create_task(self._drain(self._queue))
        if self._exporter is not None:
            self._exporter.attach(self)

    async def stop(self) -> None:
        task, self._task, self._queue = self._task, None, None
        if self._exporter is not None:
            self._exporter.detach(self)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _load_reference(
        self, model: str, path: str | None, names: tuple[str, ...] | None
    ) -> Reference | None:
        if path is None:
            return None
        try:
            return load(self._base_dir / path, self._config.bins, names)
        except ReferenceError as exc:
            # An observer must not take its route down: the model is monitored without drift, and the
            # reason is in the log and in GET /admin/monitoring/MODEL.
            self.errors[model] = f"reference not used: {exc}"
            _log.error("monitor: model %r: %s", model, self.errors[model])
            return None

    async def _drain(self, queue: asyncio.Queue[_Sample]) -> None:
        interval = self._config.flush_interval
        while True:
            batch = [await queue.get()]
            if interval:
                await asyncio.sleep(interval)  # let samples gather: numpy's cost is per call, not per row
            while True:
                while len(batch) < BATCH_SAMPLES and not queue.empty():
                    batch.append(queue.get_nowait())
                self.observe(batch)
                if queue.empty():
                    break
                batch = []
                await asyncio.sleep(0)  # one step at a time: requests run between them

    def observe(self, samples: list[_Sample]) -> None:
        """Decode samples and add them to their series (the background task's step): the rows and
        outputs of one series are joined first, so the sketches take them in one numpy pass."""
        grouped: dict[tuple[str, str, str], list[Observation]] = {}
        for sample in samples:
            try:
                observation = decode(
                    self._config.protocol, sample.request, sample.response, sample.header_length
                )
            except (GatewayError, ValueError, TypeError) as exc:
                self._reject(sample.model, exc)
                continue
            if observation.rows is not None and observation.names is None:
                observation.names = self._names_for(sample.model, observation.rows.shape[1])
            key = (sample.model, sample.version or observation.version or "", sample.arm or "")
            grouped.setdefault(key, []).append(observation)
        for key, observations in grouped.items():
            series = self.series.get(key)
            if series is None:
                reference = self.references.get(key[0])
                learn = self._config.models[key[0]].reference_arm is not None
                series = self.series[key] = ModelSeries(*key, reference, self.thresholds, learn)
            joined = joined_observations(observations)
            for one in observations if joined is None else [joined]:
                try:
                    series.observe(one)
                except (ShapeMismatch, ValueError, TypeError) as exc:
                    self._reject(key[0], exc)
        for model in {key[0] for key in grouped}:
            self._follow_reference_arm(model)

    def _follow_reference_arm(self, model: str) -> None:
        """With `reference_arm`: learn the reference from that arm's first window when there is no
        file, and point every other arm's series at the reference arm's busiest series."""
        arm = self._config.models[model].reference_arm
        if arm is None:
            return
        mine = [one for key, one in self.series.items() if key[0] == model]
        leaders = sorted((one for one in mine if one.arm == arm), key=lambda one: one.rows, reverse=True)
        if not leaders:
            return
        leader = leaders[0]
        if self.references.get(model) is None and leader.pending_rows() >= self._config.window:
            try:
                rows = np.vstack(leader.pending or [])[-self._config.window :]
                learnt = from_rows(
                    rows,
                    leader.names,
                    self._config.bins,
                    f"{len(rows)} rows of arm {arm!r} from live traffic",
                )
            except ReferenceError as exc:
                self.errors[model] = f"reference not learnt: {exc}"
                return
            self.references[model] = learnt
            for one in mine:
                try:
                    one.adopt(learnt)
                except ShapeMismatch as exc:
                    self._reject(model, exc)
        for one in mine:
            one.peer = leader if one.arm != arm and one.reference is not None else None

    def _reject(self, model: str, exc: Exception) -> None:
        self._counters["rejected"].inc()
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        self.errors[model] = f"sample not counted: {message}"

    def _names_for(self, model: str, width: int) -> tuple[str, ...] | None:
        names = self._config.models[model].features
        return names if names is not None and len(names) == width else None

"""The monitor filter: the data path picks a sample of requests, the filter studies them off it.

The filter has no request or response hook. It sets `answer_sample_rate` to its `sample_rate`: the
data path draws once per request, and for the answers it drew keeps a copy of the bytes as they
stream to the client, handing it to `on_sampled_answer` once the client has the answer (an answer
over the data path's bound comes without its body: counted as skipped). A request left out costs that
draw and nothing else. A drawn 200 answer to a POST for a monitored model is one append of
references to the two bodies to a bounded list (not an `asyncio.Queue`: its put costs several times
as much, and only the background task ever waits); a full list drops the sample and counts it:
monitoring never slows a request. One background task per filter (started in `start`, cancelled in
`stop`) sleeps until a sample comes, lets more gather for `flush_interval`, and decodes them in
steps (those of one shape at once, `plugins.monitor.fast_decode`), adding them to their series,
keyed by (model, version, experiment arm); a body it cannot read, or rows of the wrong width, are
counted as rejected with the reason kept for the report, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from plugins.monitor.decode import Observation, decode, decode_grpc, joined_observations
from plugins.monitor.fast_decode import decode_batch
from plugins.monitor.history import RowHistory
from plugins.monitor.reference import Reference, ReferenceError, from_rows, load
from plugins.monitor.series import ModelSeries, ShapeMismatch, Thresholds

FILTER_NAME = "monitor"
SAMPLE_RESULTS = ("queued", "dropped", "rejected", "skipped")
# The OIP v2 binary extension's header: the JSON part's length when raw tensors follow it.
_HEADER_LENGTH = "inference-header-content-length"
# A sample of a gRPC call (its messages are protobuf): what the gRPC front door puts in ctx.headers.
_GRPC = "application/grpc"

# Samples studied in one step of the background task: about 2.5 ms of CPU at ~9 µs a sample (one
# row of 30 features, bench/monitor_step.py), the most one step holds the event loop (and so delays
# requests) before it yields; 100 samples/s with a 1 s flush interval fit in one step.
BATCH_SAMPLES = 256

_log = logging.getLogger("turnout.monitor")


# Not frozen: a frozen dataclass sets each field through object.__setattr__, five times the cost of
# a plain one, and a sample is made on the request's own callback.
@dataclass(slots=True)
class _Sample:
    model: str
    version: str | None
    arm: str | None
    request: bytes
    response: bytes
    header_length: str | None
    grpc: bool


class SeriesExporter(Protocol):
    """Where a started filter's series are exported (the registry's `MonitorCollector`)."""

    def attach(self, filter_: MonitorFilter) -> None: ...
    def detach(self, filter_: MonitorFilter) -> None: ...


class MonitorFilter(Filter):
    name = FILTER_NAME
    # The request body is the one the data path reads to forward it: referenced, never copied. The
    # answer's body is held for the drawn requests only (answer_sample_rate).
    needs_request_body: ClassVar[bool] = True
    __slots__ = (
        "_base_dir",
        "_config",
        "_counters",
        "_dropped",
        "_exporter",
        "_models",
        "_pending",
        "_queued",
        "_task",
        "_waiter",
        "answer_sample_rate",
        "errors",
        "histories",
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
        self._queued, self._dropped = counters["queued"], counters["dropped"]
        self._models = frozenset(config.models)
        self.answer_sample_rate = config.sample_rate
        self._pending: list[_Sample] | None = None
        """Samples waiting for the background task (at most `queue_size`); None when stopped."""
        self._waiter: asyncio.Future[None] | None = None
        """The background task's wait for the next sample, while there is none."""
        self._task: asyncio.Task[None] | None = None
        self.series: dict[tuple[str, str, str], ModelSeries] = {}
        self.references: dict[str, Reference | None] = {}
        self.errors: dict[str, str] = {}
        self.histories: dict[str, RowHistory] = {}
        """Per model, a sample of its recent input rows (`baseline`)."""
        """The last error per model: an unusable reference, a body that could not be read."""

    @property
    def config(self) -> MonitorConfig:
        return self._config

    @property
    def thresholds(self) -> Thresholds:
        config = self._config
        return Thresholds(config.psi_warn, config.psi_alert, config.min_samples, config.window)

    def on_sampled_answer(self, ctx: RequestContext, response: Response) -> None:
        """A drawn request's answer, as written to the client: queue it for the background task.
        Inference is a POST; metadata and health reads on the same route are not samples."""
        model = ctx.model
        if ctx.method != "POST" or model not in self._models:
            return
        request, answer, pending = ctx.body, response.body, self._pending
        if answer is None and response.status == 200:  # longer than the data path copies
            self._counters["skipped"].inc()
            return
        if response.status != 200 or request is None or not answer or pending is None or model is None:
            return
        if len(pending) >= self._config.queue_size:
            self._dropped.inc()
            return
        headers = ctx.headers
        grpc = headers.get("content-type") == _GRPC
        pending.append(
            _Sample(model, ctx.model_version, ctx.arm, request, answer, headers.get(_HEADER_LENGTH), grpc)
        )
        self._queued.inc()
        waiter = self._waiter
        if waiter is not None:  # the background task sleeps until a sample comes: this is the one
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def start(self) -> None:
        for model, options in self._config.models.items():
            self.references[model] = self._load_reference(model, options.reference, options.features)
        self._pending = []
        self._task = asyncio.get_running_loop().create_task(self._drain(self._pending))
        if self._exporter is not None:
            self._exporter.attach(self)

    async def stop(self) -> None:
        task, self._task, self._pending, self._waiter = self._task, None, None, None
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

    async def _drain(self, pending: list[_Sample]) -> None:
        interval = self._config.flush_interval
        loop = asyncio.get_running_loop()
        while True:
            if not pending:
                self._waiter = loop.create_future()
                await self._waiter
            if interval:
                await asyncio.sleep(interval)  # let samples gather: numpy's cost is per call, not per row
            while pending:
                # Taken from the front, so the list holds at most queue_size samples all along.
                batch = pending[:BATCH_SAMPLES]
                del pending[:BATCH_SAMPLES]
                self.observe(batch)
                if pending:
                    await asyncio.sleep(0)  # one step at a time: requests run between them

    def observe(self, samples: list[_Sample]) -> None:
        """Decode samples and add them to their series (the background task's step): the rows and
        outputs of one series are joined first, so the sketches take them in one numpy pass."""
        grouped: dict[tuple[str, str, str], list[Observation]] = {}
        for sample, observation in self._decoded(samples):
            key = (sample.model, sample.version or observation.version or "", sample.arm or "")
            grouped.setdefault(key, []).append(observation)
        self._add(grouped)

    def _decoded(self, samples: list[_Sample]) -> list[tuple[_Sample, Observation]]:
        """An observation per sample, or per group of samples of one series and one shape (given with
        the group's first sample); a sample that cannot be read is counted as rejected."""
        decoded: list[tuple[_Sample, Observation]] = []
        left = samples
        if self._config.protocol in ("auto", "oip_v2"):
            left = [one for one in samples if one.header_length is not None or one.grpc]
            series: dict[tuple[str, str | None, str | None], list[_Sample]] = {}
            for one in samples:
                if one.header_length is None and not one.grpc:
                    series.setdefault((one.model, one.version, one.arm), []).append(one)
            for members in series.values():
                groups, rest = decode_batch([(one.request, one.response) for one in members])
                for indexes, observation in groups:
                    self._name_features(members[0].model, observation)
                    decoded.append((members[indexes[0]], observation))
                left.extend(members[index] for index in rest)
        for sample in left:
            try:
                if sample.grpc:
                    observation = decode_grpc(sample.request, sample.response)
                else:
                    observation = decode(
                        self._config.protocol, sample.request, sample.response, sample.header_length
                    )
            except (GatewayError, ValueError, TypeError) as exc:
                self._reject(sample.model, exc)
                continue
            self._name_features(sample.model, observation)
            decoded.append((sample, observation))
        return decoded

    def _add(self, grouped: dict[tuple[str, str, str], list[Observation]]) -> None:
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
                    continue
                if one.rows is not None and self._config.history > 0:
                    history = self.histories.get(key[0])
                    if history is None:
                        history = self.histories[key[0]] = RowHistory(self._config.history)
                    history.add(one.rows, one.names)
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

    def recent_rows(self, model: str, seconds: float) -> tuple[np.ndarray, tuple[str, ...] | None, int]:
        """A sample of the model's input rows of the last `seconds` (see `RowHistory.window`), their
        feature names, and how many rows that time saw."""
        history = self.histories.get(model)
        if history is None:
            return np.empty((0, 0)), None, 0
        rows, seen = history.window(seconds)
        return rows, history.names, seen

    def use_baseline(self, model: str, seconds: float) -> Reference:
        """Make the last `seconds` of the model's live traffic its reference, now: every series of
        the model starts its drift windows again against it. Raises `ReferenceError` when those
        rows cannot make one (too few, or none)."""
        rows, names, seen = self.recent_rows(model, seconds)
        if len(rows) < self._config.min_samples:
            raise ReferenceError(
                f"model {model!r}: {len(rows)} rows kept from the last {seconds:g} s of traffic; a "
                f"reference needs at least min_samples ({self._config.min_samples})"
            )
        source = f"{len(rows)} rows sampled from {seen} of live traffic over the last {seconds:g} s"
        reference = from_rows(rows, names or self._config.models[model].features, self._config.bins, source)
        self.references[model] = reference
        self.errors.pop(model, None)
        for key in [key for key in self.series if key[0] == model]:
            learn = self._config.models[model].reference_arm is not None
            self.series[key] = ModelSeries(*key, reference, self.thresholds, learn)
        return reference

    def _reject(self, model: str, exc: Exception) -> None:
        self._counters["rejected"].inc()
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        self.errors[model] = f"sample not counted: {message}"

    def _name_features(self, model: str, observation: Observation) -> None:
        """Features by the configured names when the body names none and the widths agree."""
        names = self._config.models[model].features
        rows = observation.rows
        if rows is not None and observation.names is None and names and len(names) == rows.shape[1]:
            observation.names = names

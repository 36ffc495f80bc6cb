"""Experiments at run time: splits, the event recorder and its store, canary controllers, shadow
mirrors and the state sync between replicas.

One `ExperimentsService` belongs to the gateway and outlives reloads: a reload rebuilds only the
experiments whose config changed (their stored state is adopted, so a canary keeps its step), while
the store, the recorder and unchanged splits carry on untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from experiments.config import AbConfig, BlueGreenConfig, CanaryConfig, ShadowConfig
from experiments.controller import CanaryController
from experiments.event_cache import EventCache
from experiments.events import exposure_for, outcome_for
from experiments.journal import EventJournal
from experiments.outbound import OutboundRequest
from experiments.outputs import output_metric_names, summarize_outputs
from experiments.recorder import EventRecorder
from experiments.segments import segment_values
from experiments.shadow import ShadowJob, ShadowMirror
from experiments.smoke import SmokeCheck
from experiments.splits import build_split
from experiments.splits.base import Assignment, Split
from experiments.splits.blue_green import BlueGreenSplit
from experiments.splits.canary import CanarySplit
from experiments.stats import preload_scipy
from experiments.store import EventStore, open_store
from experiments.sync import SplitStateSync
from gateway.cluster import ClusterRuntime
from gateway.config import GatewayConfig, StateConfig
from gateway.core.context import RequestContext
from gateway.experiments_feedback import FeedbackIntake, exposure_id_for
from gateway.internal_client import send_to_cluster

log = logging.getLogger("turnout.experiments")

AnyExperiment = AbConfig | CanaryConfig | BlueGreenConfig | ShadowConfig
# The recorder's journal lives beside the SQLite file (SQLite's own files end in -wal, -shm, -journal).
JOURNAL_SUFFIX = ".recorder-journal"
# Shadow copies and smoke checks may take this long: a mirror is never waited for by a client.
INTERNAL_TIMEOUT_S = 30.0


def _fingerprint(config: AnyExperiment) -> str:
    canonical = orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def needs_experiments(config: GatewayConfig) -> bool:
    return bool(config.experiments) or any(r.backend.feedback for r in config.routes)


class ExperimentsService:
    def __init__(
        self,
        state: StateConfig,
        clusters: Callable[[], Mapping[str, ClusterRuntime]],
        secure_cookie: bool = False,
    ) -> None:
        self.store: EventStore = open_store(redis_url=state.redis_url, sqlite_path=state.sqlite_path)
        self._sqlite_path = None if state.redis_url else Path(state.sqlite_path)
        recorder = state.recorder
        journaled = self._sqlite_path is not None and recorder.journal and state.sqlite_path != ":memory:"
        self.recorder = EventRecorder(
            self.store,
            capacity=recorder.capacity,
            batch_size=recorder.flush_events,
            flush_interval=recorder.flush_interval,
            journal=EventJournal(f"{state.sqlite_path}{JOURNAL_SUFFIX}") if journaled else None,
        )
        self.splits: dict[str, Split] = {}
        self.configs: dict[str, AnyExperiment] = {}
        self.feedback = FeedbackIntake(self.store, self.recorder, self.configs, recorder.flush_interval)
        self.output_names: dict[str, tuple[str, ...]] = {}
        self.event_cache = EventCache(self.store)
        """Raw events kept between status requests (`experiments.event_cache`)."""
        self.segment_dimensions: dict[str, tuple[str, ...]] = {}
        """Per experiment, the segment dimensions its exposures record (`experiments.segments`)."""
        self._fingerprints: dict[str, str] = {}
        self.controllers: dict[str, CanaryController] = {}
        self.mirrors: dict[str, ShadowMirror] = {}
        self.sync = SplitStateSync(self.store, self.splits)
        self._clusters = clusters
        self._secure_cookie = secure_cookie
        self._started = False

    # ----- lifecycle -----

    async def start(self) -> None:
        if self._sqlite_path is not None:
            self._sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        await self.store.start()
        await self.recorder.start()
        await self.sync.start()
        self._started = True

    async def apply(self, config: GatewayConfig) -> None:
        """Build or keep each experiment of `config`; stop those that are gone."""
        if any(isinstance(experiment, AbConfig | CanaryConfig) for experiment in config.experiments.values()):
            # Their status and a canary's controller compute statistics: scipy is imported now, off
            # the event loop, not by the first of them with requests in flight (a second's stall).
            await asyncio.to_thread(preload_scipy)
        for name in [n for n in self.splits if n not in config.experiments]:
            await self._retire(name)
        for name, experiment in config.experiments.items():
            fingerprint = _fingerprint(experiment)
            if self._fingerprints.get(name) == fingerprint:
                continue
            await self._retire(name)
            split = build_split(name, experiment, secure_cookie=self._secure_cookie)
            await self._resume_or_reset(name, split, fingerprint)
            self.splits[name] = split
            self.configs[name] = experiment
            self.output_names[name] = output_metric_names(getattr(experiment, "metrics", ()))
            self.segment_dimensions[name] = tuple(getattr(experiment, "segments", ()))
            self._fingerprints[name] = fingerprint
            if isinstance(experiment, CanaryConfig) and isinstance(split, CanarySplit):
                controller = CanaryController(
                    name, experiment, split, self.store, shadow=self._shadow_tally(name)
                )
                await controller.start()
                self.controllers[name] = controller
            if isinstance(experiment, ShadowConfig):
                mirror = ShadowMirror(name, experiment, self.send)
                await mirror.start()
                self.mirrors[name] = mirror

    async def _resume_or_reset(self, name: str, split: Split, fingerprint: str) -> None:
        """Resume the stored state (after a restart, or another replica's change) when it belongs to
        this same config. When the experiment's config changed (other arms, weights, steps), start
        afresh from the file, in a new phase so that analysis never mixes the two: a stored state
        for other arms could send units to an arm that no longer exists."""
        key = f"{name}#config"
        stored_config = await self.store.load_state(key)
        if stored_config is not None and stored_config.get("fingerprint") == fingerprint:
            await self.sync.adopt(split)
            return
        stored_state = await self.store.load_state(name)
        if stored_state is not None:
            fresh = dict(split.state_dict())
            fresh["revision"] = int(stored_state.get("revision", 0)) + 1
            fresh["phase"] = int(stored_state.get("phase", 0)) + 1
            split.apply_dict(fresh, force=True)
        await self.sync.publish(split)
        revision = int(stored_config.get("revision", 0)) + 1 if stored_config is not None else 1
        await self.store.save_state(key, {"fingerprint": fingerprint, "revision": revision})

    def _shadow_tally(self, name: str) -> Callable[[], Any]:
        def tally() -> Any:
            mirror = self.mirrors.get(name)
            return mirror.comparison.tally() if mirror is not None else None

        return tally

    async def _retire(self, name: str) -> None:
        controller = self.controllers.pop(name, None)
        if controller is not None:
            await controller.stop()
        mirror = self.mirrors.pop(name, None)
        if mirror is not None:
            await mirror.stop()
        self.splits.pop(name, None)
        self.configs.pop(name, None)
        self.segment_dimensions.pop(name, None)
        self.event_cache.forget(name)
        self._fingerprints.pop(name, None)

    async def stop(self) -> None:
        """Stop controllers and mirrors, then flush every recorded event before closing the store."""
        for name in list(self.splits):
            await self._retire(name)
        if self._started:
            await self.sync.stop()
            await self.recorder.stop()
            await self.store.stop()
            self._started = False

    # ----- per request -----

    def expose(self, assignment: Assignment, ctx: RequestContext) -> str:
        """Record the exposure; its id, for the client to name in feedback (x-turnout-exposure-id)."""
        ctx.experiment = assignment.experiment
        ctx.arm = assignment.arm
        ctx.unit_id = assignment.unit_id
        exposure_id = exposure_id_for(ctx)
        dimensions = self.segment_dimensions.get(assignment.experiment)
        segments = segment_values(dimensions, ctx) if dimensions else ()
        self.recorder.record(exposure_for(assignment, ctx.request_id, time.time(), exposure_id, segments))
        return exposure_id

    def record_outcome(
        self, assignment: Assignment, ctx: RequestContext, total_s: float, body: bytes | None
    ) -> None:
        names = self.output_names.get(assignment.experiment, ())
        outputs = (
            summarize_outputs(body, names, ctx.headers.get("inference-header-content-length"))
            if names and body and ctx.status < 400
            else ()
        )
        self.recorder.record(
            outcome_for(
                assignment,
                ctx.request_id,
                time.time(),
                latency_s=total_s,
                status=ctx.status,
                response_bytes=ctx.bytes_out,
                outputs=outputs,
                failed=ctx.status == 0 or ctx.error is not None,
            )
        )

    def needs_response_body(self, name: str) -> bool:
        return bool(self.output_names.get(name)) or name in self.mirrors

    def offer_shadow(
        self,
        assignment: Assignment,
        ctx: RequestContext,
        path: str,
        status: int,
        body: bytes,
        latency_s: float,
    ) -> None:
        """Copy the request to the mirrors; `path` is the one the primary saw (after any rewrite)."""
        mirror = self.mirrors.get(assignment.experiment)
        if mirror is None:
            return
        request = OutboundRequest(ctx.method, path, ctx.query, _forwardable(ctx.headers), ctx.body or b"")
        for arm, cluster in assignment.mirrors:
            mirror.offer(ShadowJob(arm, cluster, request, status, body, latency_s))

    async def accept_feedback(self, payload: Any) -> dict[str, Any]:
        """Record one feedback document (parsed JSON); the 202 answer's body, or a GatewayError:
        400 for a malformed document or a value out of bounds, 404 for an exposure nobody knows,
        503 when the event queue is full or the store cannot be read."""
        return await self.feedback.accept(payload)

    # ----- what the package asks the gateway to send -----

    async def send(self, cluster_name: str, request: OutboundRequest) -> tuple[int, bytes, float]:
        cluster = self._clusters().get(cluster_name)
        if cluster is None:
            raise LookupError(f"unknown cluster '{cluster_name}'")
        target = f"{request.path}?{request.query}" if request.query else request.path
        reply = await send_to_cluster(
            cluster, request.method, target, request.headers, request.body, cluster.retry, INTERNAL_TIMEOUT_S
        )
        return reply.status, reply.body, reply.latency_s

    async def cluster_healthy(self, cluster_name: str) -> bool:
        cluster = self._clusters().get(cluster_name)
        return cluster is not None and bool(cluster.endpoints.eligible)

    async def switch_blue_green(self, name: str) -> dict[str, Any]:
        split = self.splits[name]
        config = self.configs[name]
        assert isinstance(split, BlueGreenSplit) and isinstance(config, BlueGreenConfig)
        check = SmokeCheck(self.send, self.cluster_healthy, config.smoke)
        await split.switch(check)
        await self.sync.publish(split)
        return split.state_dict()


# Hop-by-hop and per-hop headers are not copied to a mirror: the gateway sets its own.
_NOT_MIRRORED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "expect", "te", "upgrade"}
)


def _forwardable(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in headers.items() if k not in _NOT_MIRRORED)

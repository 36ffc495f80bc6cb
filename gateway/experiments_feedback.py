"""Feedback intake: a value is recorded only once it is known which exposure (or unit) it joins.

What a client sends is checked by `experiments.feedback` (400 naming the field). Then the exposure it
names is looked up: in the store, and among the events the recorder has accepted but not yet written
(an exposure a moment old is still on its way). An id found nowhere may belong to an exposure another
replica has not written yet, so the lookup is repeated for `hold_window(flush_interval)`: two of the
recorder's write intervals (the replica's next round, and a write in progress) plus `HOLD_MARGIN_S`
for the store's round trips. After that the answer is 404: feedback is never accepted and then
silently joined to nothing. Each outcome is counted (`FeedbackIntake.counts`, exported as
`turnout_experiment_feedback_total{result=...}`).

Exposure ids are made by the gateway: its own request id when the client sent no `x-request-id`
(clients that echo the id they were given keep working), otherwise a new random id, so a client can
neither choose nor share one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from experiments.config import (
    DEFAULT_FEEDBACK_BOUNDS,
    AbConfig,
    BlueGreenConfig,
    CanaryConfig,
    FeedbackBounds,
    ShadowConfig,
)
from experiments.events import Exposure, Feedback
from experiments.feedback import FeedbackDocument, OutOfBounds, check_bounds, parse_feedback
from experiments.recorder import EventRecorder
from experiments.store.aggregate import JoinTarget
from experiments.store.base import EventStore
from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, GatewayError, NotFound, ServiceUnavailable
from gateway.http.headers import new_request_id

log = logging.getLogger("turnout.experiments")

# Room for the store's own round trips on top of the recorders' write intervals.
HOLD_MARGIN_S = 0.25
# How often an unknown id is looked up again while it is held: a few store reads per held request.
HOLD_POLL_S = 0.05
RESULTS = ("accepted", "invalid", "out_of_bounds", "unknown", "unavailable")


def hold_window(flush_interval: float) -> float:
    """How long feedback for an unknown id waits for its exposure to reach the store."""
    return 2.0 * flush_interval + HOLD_MARGIN_S


def exposure_id_for(ctx: RequestContext) -> str:
    """The gateway's request id when the gateway made it, else a new id: never the client's."""
    if ctx.request_id and ctx.headers.get("x-request-id") != ctx.request_id:
        return ctx.request_id
    return new_request_id()


class FeedbackIntake:
    """Checks, joins and records feedback; shared by every request (no per-request state)."""

    def __init__(
        self,
        store: EventStore,
        recorder: EventRecorder,
        configs: Mapping[str, AbConfig | CanaryConfig | BlueGreenConfig | ShadowConfig],
        flush_interval: float,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._configs = configs
        self._hold = hold_window(flush_interval)
        self.counts: dict[str, int] = dict.fromkeys(RESULTS, 0)

    async def accept(self, payload: Any) -> dict[str, Any]:
        try:
            receipt = await self._accept(payload)
        except GatewayError as error:
            self.counts[_result_of(error)] += 1
            raise
        self.counts["accepted"] += 1
        return receipt

    async def _accept(self, payload: Any) -> dict[str, Any]:
        document = parse_feedback(payload)
        feedback = Feedback(
            metric=document.metric,
            value=document.value,
            time=time.time(),
            request_id=document.request_id,
            unit_id=document.unit_id,
            experiment=document.experiment,
            exposure_id=document.exposure_id,
        )
        targets = await self._targets(feedback)
        if not targets:
            raise NotFound(_unknown(document))
        experiments = sorted({target.experiment for target in targets})
        for name in experiments:
            check_bounds(document, name, self._bounds(name, document.metric))
        if not self._recorder.record(feedback):
            raise ServiceUnavailable("the event queue is full; retry shortly")
        if document.exposure_id:
            return {"accepted": True, "exposure_id": document.exposure_id, "experiments": experiments}
        return {"accepted": True, "unit_id": document.unit_id, "experiments": experiments}

    def _bounds(self, experiment: str, metric: str) -> FeedbackBounds:
        """The metric's declared bounds; the default for kinds without metrics (or a retired one)."""
        config = self._configs.get(experiment)
        if isinstance(config, AbConfig | CanaryConfig):
            return config.bounds_of(metric)
        return DEFAULT_FEEDBACK_BOUNDS

    async def _targets(self, feedback: Feedback) -> list[JoinTarget]:
        give_up_at = time.monotonic() + self._hold
        while True:
            try:
                stored = await self._store.feedback_targets(feedback)
            except Exception as exc:  # a store that cannot answer: the client may retry
                log.warning("feedback: the experiment store cannot be read", exc_info=True)
                raise ServiceUnavailable("the experiment store cannot be read; retry shortly") from exc
            # The value joins both: a unit may have a stored exposure in one experiment and a queued
            # one in another, and each experiment's bounds apply.
            targets = {target.experiment: target for target in self._queued_targets(feedback)}
            targets.update((target.experiment, target) for target in stored)
            if targets or time.monotonic() >= give_up_at:
                return list(targets.values())
            await asyncio.sleep(HOLD_POLL_S)

    def _queued_targets(self, feedback: Feedback) -> list[JoinTarget]:
        """Exposures accepted by this gateway's recorder and not yet written (the latest per
        experiment, as the store keeps a unit's latest exposure)."""
        found: dict[str, JoinTarget] = {}
        for event in self._recorder.queued():
            if not isinstance(event, Exposure) or not _names(feedback, event):
                continue
            if feedback.experiment is None or event.experiment == feedback.experiment:
                found[event.experiment] = JoinTarget(
                    event.experiment, event.phase, event.arm, event.unit_id, event.analyzed
                )
        return list(found.values())


def _names(feedback: Feedback, exposure: Exposure) -> bool:
    if feedback.key:
        return exposure.key == feedback.key
    return feedback.unit_id is not None and exposure.unit_id == feedback.unit_id


def _unknown(document: FeedbackDocument) -> str:
    scope = f" in experiment '{document.experiment}'" if document.experiment else ""
    if document.exposure_id:
        return (
            f"no exposure has id '{document.exposure_id}'{scope}: send the x-turnout-exposure-id of the "
            "answer (a request id the client chose is not an exposure id)"
        )
    return f"unit '{document.unit_id}' has no exposure{scope}"


def _result_of(error: GatewayError) -> str:
    if isinstance(error, NotFound):
        return "unknown"
    if isinstance(error, OutOfBounds):
        return "out_of_bounds"
    return "invalid" if isinstance(error, BadRequest) else "unavailable"

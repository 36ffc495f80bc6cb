"""The canary controller: every interval, decide to roll back, advance, promote or hold.

One tick, for the current step (phase):
1. A guardrail regressed (one-sided always-valid test over the whole rollout: the candidate is worse
   than its limit, Holm-adjusted across guardrails: see `experiments.guardrails`) -> roll back at
   once, candidate to 0 %.
2. Paused by an operator -> hold.
3. The step's min_duration and min_units are met and every guardrail holds -> advance to the next
   step; after the last step, or when the next step is 100 % (no baseline left to compare with),
   promote.
4. Otherwise hold, saying what is missing (time, units, data, or an estimate past its limit).
Each decision is stored with its evidence (estimates, statistics, bounds, counts). The split's state
and the controller's evidence (running p-values, the likelihood ratios carried from earlier steps) are
stored after every tick, so a restarted controller resumes the same step with the same evidence.
With several replicas only the holder of the lease decides; the others adopt the published state
(`experiments.sync.SplitStateSync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from experiments.config import CanaryConfig
from experiments.events import Decision
from experiments.guardrails import (
    GuardrailResult,
    ShadowTally,
    evaluate_guardrail,
    guardrail_key,
    holm_across,
)
from experiments.splits.base import Clock, SplitStatus
from experiments.splits.canary import BASELINE, CANDIDATE, CanarySplit
from experiments.stats.sequential import DEFAULT_BURN_IN
from experiments.store.base import EventStore

_log = logging.getLogger(__name__)

# The lease outlives three ticks: a leader that misses one or two (a slow store call, a GC pause)
# keeps it, and a dead leader is replaced within three intervals.
LEASE_TICKS = 3
# The controller's memo (running p-values) is stored under the experiment name plus this suffix.
MEMO_SUFFIX = "/controller"
# The smallest N* for the guardrail tests: below twice the burn-in the mixture is tuned for samples
# no decision is ever made at.
_MIN_N_STAR = 2 * DEFAULT_BURN_IN
# A floor on the candidate's share when sizing N*: an operator may set a step to 0 %, and one bucket
# (0.01 %) is the smallest share the bucket line can express anyway.
_MIN_SHARE = 1e-4
# The guardrail tests' N* is this many times the step's minimum sample: a candidate one limit-width
# past its limit is caught at about that sample (simulated: 2 % errors against a 1-point limit, a
# median of ~400 candidate units where the demo's steps ask for 100), and the mixture's confidence
# sequence is tightest at N*. Any value keeps the error rate; this one took a tenth off the median.
_ROLLBACK_HORIZON = 4.0
_TERMINAL = frozenset({SplitStatus.PROMOTED, SplitStatus.ROLLED_BACK})


@dataclass(frozen=True, slots=True)
class ControllerMemo:
    """What the controller carries between ticks, per guardrail key: the running minimum p over the
    rollout, the ln Lambda the current phase's last tick saw, and the sum of those the earlier
    phases ended with (`experiments.guardrails`: one test over every step)."""

    revision: int = 0
    phase: int = -1
    min_p: dict[str, float] = field(default_factory=dict)
    log_lr: dict[str, float] = field(default_factory=dict)
    carried: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "phase": self.phase,
            "min_p": self.min_p,
            "log_lr": self.log_lr,
            "carried": self.carried,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ControllerMemo:
        def floats(name: str) -> dict[str, float]:
            return {str(k): float(v) for k, v in payload.get(name, {}).items()}

        return cls(
            int(payload["revision"]),
            int(payload["phase"]),
            floats("min_p"),
            floats("log_lr"),
            floats("carried"),
        )

    def entering(self, phase: int) -> ControllerMemo:
        """The memo for a tick of `phase`: at a phase change, the last phase's ln Lambda is carried
        (a memo of an older version carried nothing and restarted its p-values per phase)."""
        if phase == self.phase:
            return self
        carried = dict(self.carried)
        for key, value in self.log_lr.items():
            carried[key] = carried.get(key, 0.0) + value
        return ControllerMemo(self.revision, phase, dict(self.min_p), {}, carried)


class CanaryController:
    def __init__(
        self,
        name: str,
        config: CanaryConfig,
        split: CanarySplit,
        store: EventStore,
        *,
        owner: str | None = None,
        clock: Clock = time.time,
        shadow: Callable[[], ShadowTally | None] | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._split = split
        self._store = store
        self._clock = clock
        self._shadow = shadow
        self.owner = owner or uuid.uuid4().hex
        self._lease = store.lease(name, config.interval * LEASE_TICKS, self.owner)
        self._memo = ControllerMemo()
        compared = sum(1 for step in config.steps if step.percent < 100.0)
        # The bound a step must clear to advance is a fixed-horizon one, checked at every tick: at
        # alpha / (steps that compare), as before the rollback test was chained, so a candidate at
        # its limit slips past it no more often than it did (the rollback test no longer splits).
        self._hold_alpha = config.alpha / max(compared, 1)
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.is_leader = False

    async def restore(self) -> None:
        """Adopt the stored split state and memo (after a restart); store the initial state if none."""
        payload = await self._store.load_state(self.name)
        if payload is None:
            await self._store.save_state(self.name, self._split.state_dict())
        else:
            self._split.apply_dict(payload)
        await self._load_memo()

    async def _load_memo(self) -> None:
        stored = await self._store.load_state(self.name + MEMO_SUFFIX)
        if stored is not None:
            memo = ControllerMemo.from_dict(stored)
            if memo.revision > self._memo.revision:
                self._memo = memo

    async def start(self) -> None:
        if self._task is not None:
            return
        await self.restore()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name=f"canary-controller-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and self._stop is not None:
            self._stop.set()
            await task
        if self.is_leader:
            await self._lease.release()
            self.is_leader = False

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # a failed tick (store outage) must not end the loop; the next retries
                _log.warning("canary %s: controller tick failed", self.name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.interval)

    async def tick(self) -> Decision | None:
        """One evaluation. None when another replica leads or the canary has finished."""
        self.is_leader = await self._lease.acquire()
        payload = await self._store.load_state(self.name)
        if payload is not None:
            self._split.apply_dict(payload)
        if not self.is_leader:
            return None
        state = self._split.state
        if state.status in _TERMINAL:
            return None
        await self._load_memo()  # a previous leader may have carried the evidence further
        data = await self._store.phase_data(self.name, state.phase)
        memo = self._memo.entering(state.phase)
        shadow = self._shadow() if self._shadow is not None else None
        level = self._config.alpha
        results = [
            evaluate_guardrail(
                guardrail,
                data,
                baseline_arm=BASELINE,
                candidate_arm=CANDIDATE,
                alpha=level,
                n_star=self._n_star(),
                burn_in=DEFAULT_BURN_IN,
                shadow=shadow,
                previous_p=memo.min_p.get(guardrail_key(guardrail), 1.0),
                carried_log_lr=memo.carried.get(guardrail_key(guardrail), 0.0),
                hold_alpha=self._hold_alpha,
            )
            for guardrail in self._config.guardrails
        ]
        results = holm_across(results, level)
        now = self._clock()
        action, reasons = self._decide(results, data.arm(CANDIDATE).units, now)
        evidence = {
            "step": state.step,
            "percent": state.percent,
            "elapsed_s": now - state.step_started_at,
            "units": {BASELINE: data.arm(BASELINE).units, CANDIDATE: data.arm(CANDIDATE).units},
            "requests": {BASELINE: data.arm(BASELINE).requests, CANDIDATE: data.arm(CANDIDATE).requests},
            "guardrails": [result.to_dict() for result in results],
        }
        decision = Decision(self.name, now, state.phase, action, tuple(reasons), evidence)
        await self._persist(memo, results)
        await self._store.add_decision(decision)
        return decision

    def _n_star(self) -> float:
        """Where the guardrail tests are tuned: a few times the total units expected when this
        step's minimum candidate units are reached."""
        state = self._split.state
        step = self._config.steps[min(state.step, len(self._config.steps) - 1)]
        share = max(state.percent / 100.0, _MIN_SHARE)
        return _ROLLBACK_HORIZON * max(float(_MIN_N_STAR), max(step.min_units, DEFAULT_BURN_IN) / share)

    def _decide(
        self, results: list[GuardrailResult], candidate_units: int, now: float
    ) -> tuple[str, list[str]]:
        split = self._split
        state = split.state
        regressed = [r for r in results if r.status == "regressed"]
        if regressed:
            split.rollback()
            return "rollback", [_describe(r) for r in regressed]
        if state.status is SplitStatus.PAUSED:
            return "hold", ["paused by an operator"]
        step = self._config.steps[state.step]
        waiting = []
        elapsed = now - state.step_started_at
        if elapsed < step.min_duration:
            waiting.append(f"step {state.step} has run {elapsed:.3g}s of {step.min_duration:g}s")
        if candidate_units < step.min_units:
            waiting.append(f"{candidate_units} of {step.min_units} candidate units")
        waiting += [_describe(r) for r in results if r.status != "holds"]
        if waiting:
            return "hold", waiting
        last = split.is_last_step or split.steps[state.step + 1] >= 100.0
        if last:
            split.promote()
            return "promote", [f"step {state.step} ({state.percent:g} %) passed its guardrails; promoted"]
        split.advance()
        return "advance", [f"step {state.step} ({state.percent:g} %) passed; now {split.state.percent:g} %"]

    async def _persist(self, memo: ControllerMemo, results: list[GuardrailResult]) -> None:
        min_p, log_lr = dict(memo.min_p), dict(memo.log_lr)
        for result in results:
            min_p[result.key] = min(min_p.get(result.key, 1.0), result.p_value)
            log_lr[result.key] = result.log_lr
        self._memo = ControllerMemo(memo.revision + 1, memo.phase, min_p, log_lr, dict(memo.carried))
        if not await self._store.save_state(self.name, self._split.state_dict()):
            payload = await self._store.load_state(self.name)  # an operator's change came first
            if payload is not None:
                self._split.apply_dict(payload, force=True)
        await self._store.save_state(self.name + MEMO_SUFFIX, self._memo.to_dict())


def _describe(result: GuardrailResult) -> str:
    if result.status == "regressed":
        return (
            f"{result.metric} regressed: {result.candidate:.4g} vs baseline {result.baseline:.4g} "
            f"({result.bound} {result.threshold:g}; always-valid p = {result.p_value:.3g})"
        )
    if result.status == "exceeded":
        limit = f"{result.bound} {result.threshold:g}"
        return (
            f"{result.metric} is not yet shown within its limit ({limit}): its one-sided bound "
            f"{result.upper_bound:.4g} is past {result.null:g}"
        )
    if result.status == "insufficient_data":
        return f"{result.metric}: not enough data yet"
    return f"{result.metric} holds"

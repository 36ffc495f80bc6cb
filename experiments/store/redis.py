"""The Redis event store: one shared store for several gateway replicas.

Every statistic is a sum kept in a hash and bumped with HINCRBY(FLOAT), so replicas add to it without
coordination. Per-unit totals change inside a Lua script that returns the new totals, so the
unit-level sums of squares and cross-products are updated from a consistent snapshot even when two
replicas update one unit at once (see `experiments.store.aggregate`). Every other write of a batch
(sums, raw events in capped streams, the join keys feedback uses to find its arm) goes through one
more script. Both scripts are guarded by the batch id, so a write retried after a lost reply is
applied exactly once. Split and controller state is a hash whose payload only a higher revision
replaces (compare-and-set).

Keys (prefix P, experiment E, phase N, arm A): P E:N:moments:A, P E:N:hist:A, P E:N:labels:A,
P E:N:units:A (unit-level sums), P E:N:counters, P E:N:arms, P E:phases, P E:N:u:A:UNIT (one unit's
totals), P E:N:ua:UNIT (a unit's arms, for crossovers), P E:raw:KIND, P E:decisions,
P req:ID (an exposure id), P unit:UNIT, P batch:ID:..., P state:KEY, P lease:NAME.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, cast

import orjson
from redis.asyncio import Redis

from experiments.events import Decision, Event, Exposure, Feedback, Outcome
from experiments.lease import Lease, RedisLease
from experiments.store.aggregate import ANY_EXPERIMENT, BatchDeltas, JoinTarget, aggregate, unit_moment_deltas
from experiments.store.base import COUNTER_CROSSOVERS, EventKind, PhaseData, RawMoments, build_phase_data
from experiments.store.redis_scripts import APPLY_ONCE, SAVE_STATE, UPDATE_UNITS_ONCE
from experiments.store.rows import exposure_row, feedback_rows, outcome_row, typed_row

# Unit totals and join keys outlive any realistic experiment phase (a month), then expire on their own.
DEFAULT_RETENTION_S = 30 * 24 * 3600.0
# Feedback (a conversion, a label) usually arrives within minutes; a week covers slow pipelines.
DEFAULT_JOIN_TTL_S = 7 * 24 * 3600.0
# Raw events kept per experiment and kind for export (approximate trimming, ~100 bytes each in Redis).
DEFAULT_RAW_LIMIT = 1_000_000
# Decisions kept per experiment: a canary decides every interval, and a month at 10 s is ~260k;
# the timeline needs the recent ones.
DECISIONS_KEPT = 10_000
# Units per unit-totals script call: long scripts block Redis for every client, so batches are cut.
_UNITS_PER_SCRIPT = 256
# How long a batch's "already applied" marks live: far longer than any retry of that batch.
_GUARD_TTL_MS = 24 * 3600 * 1000
# XRANGE page size when exporting: large enough to need few round trips, small enough that one reply
# (~100 KB) never stalls Redis for other clients.
_EXPORT_PAGE = 1000
# Joins a metric or output name with a statistic or label inside one hash field; names never contain it.
_SEP = "\x1f"


class _Ops:
    """Write operations gathered for the apply-once script, flattened into its arguments."""

    __slots__ = ("args",)

    def __init__(self) -> None:
        self.args: list[str | int | float] = []

    def add(self, op: str, *parts: str | int | float) -> None:
        self.args.append(op)
        self.args.extend(parts)


def _link(exposure: Exposure) -> str:
    """What feedback needs to find this exposure's arm."""
    return orjson.dumps([exposure.phase, exposure.arm, exposure.unit_id, exposure.analyzed]).decode()


def _join_key(feedback: Feedback) -> str:
    """The key of the links a feedback value joins: its exposure's, else its unit's."""
    return ("req:" + feedback.key) if feedback.key else ("unit:" + str(feedback.unit_id))


def _targets(feedback: Feedback, links: Mapping[str, str]) -> list[JoinTarget]:
    targets = []
    for experiment, link in links.items():
        if feedback.experiment is not None and experiment != feedback.experiment:
            continue
        phase, arm, unit_id, analyzed = orjson.loads(link)
        targets.append(JoinTarget(experiment, int(phase), arm, unit_id, bool(analyzed)))
    return targets


def _text(value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    return value if isinstance(value, int | float | str) else str(value)


class RedisEventStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "turnout:exp:",
        retention: float = DEFAULT_RETENTION_S,
        join_ttl: float = DEFAULT_JOIN_TTL_S,
        raw_limit: int = DEFAULT_RAW_LIMIT,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._retention_ms = round(retention * 1000)
        self._join_ttl_ms = round(join_ttl * 1000)
        self._raw_limit = raw_limit
        self._client: Redis | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("the Redis event store is not started")
        return self._client

    async def start(self) -> None:
        if self._client is None:
            self._client = Redis.from_url(self._url, decode_responses=True)
            await self._client.ping()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    def _key(self, experiment: str, *parts: object) -> str:
        return self._prefix + experiment + "".join(f":{part}" for part in parts)

    async def write(self, events: Sequence[Event], *, batch_id: str | None = None) -> None:
        """Apply a batch once: a retry with the same `batch_id` after a lost reply changes nothing twice.

        Feedback links are read first (reads are harmless to repeat), then the unit-totals script runs
        (its results are remembered under the batch id, so a replay gets the same answer), then one
        script applies every other write, guarded by the batch id.
        """
        if not events:
            return
        batch = batch_id or uuid.uuid4().hex
        exposures = [e for e in events if isinstance(e, Exposure)]
        outcomes = [e for e in events if isinstance(e, Outcome)]
        feedback = [e for e in events if isinstance(e, Feedback)]
        joined, unmatched = await self._join(feedback, exposures)
        deltas = aggregate(exposures, outcomes, joined, unmatched)
        ops = _Ops()
        await self._unit_updates(ops, deltas, batch)
        self._sums(ops, deltas)
        for exposure in exposures:
            self._links(ops, exposure)
            self._raw(ops, exposure.experiment, "exposures", exposure_row(exposure))
        for outcome in outcomes:
            self._raw(ops, outcome.experiment, "outcomes", outcome_row(outcome))
        for row in feedback_rows([(f, t.experiment) for f, t in joined], unmatched, ANY_EXPERIMENT):
            self._raw(ops, row["experiment"], "feedback", row)
        guard = self._prefix + "batch:" + batch + ":apply"
        await self.client.eval(APPLY_ONCE, 1, guard, _GUARD_TTL_MS, *ops.args)

    def _raw(self, ops: _Ops, experiment: str, kind: EventKind, row: Mapping[str, Any]) -> None:
        fields = [item for column, value in row.items() for item in (column, _text(value))]
        ops.add("xa", self._key(experiment, "raw", kind), self._raw_limit, len(fields) // 2, *fields)

    def _links(self, ops: _Ops, exposure: Exposure) -> None:
        link = _link(exposure)
        if exposure.key:
            ops.add("hs", self._prefix + "req:" + exposure.key, exposure.experiment, link, self._join_ttl_ms)
        if exposure.unit_id:
            ops.add(
                "hs", self._prefix + "unit:" + exposure.unit_id, exposure.experiment, link, self._join_ttl_ms
            )

    async def _join(
        self, feedback: Sequence[Feedback], exposures: Sequence[Exposure]
    ) -> tuple[list[tuple[Feedback, JoinTarget]], list[Feedback]]:
        """Targets of each feedback value: exposures stored earlier, and those in this same batch."""
        if not feedback:
            return [], []
        in_batch: dict[str, dict[str, str]] = {}
        for exposure in exposures:
            if exposure.key:
                in_batch.setdefault("req:" + exposure.key, {})[exposure.experiment] = _link(exposure)
            if exposure.unit_id:
                in_batch.setdefault("unit:" + exposure.unit_id, {})[exposure.experiment] = _link(exposure)
        keys = [_join_key(f) for f in feedback]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._prefix + key)
        stored: list[dict[str, str]] = await pipe.execute()
        joined: list[tuple[Feedback, JoinTarget]] = []
        unmatched: list[Feedback] = []
        for item, key, links in zip(feedback, keys, stored, strict=True):
            targets = _targets(item, {**links, **in_batch.get(key, {})})
            joined.extend((item, target) for target in targets)
            if not targets:
                unmatched.append(item)
        return joined, unmatched

    async def feedback_targets(self, feedback: Feedback) -> list[JoinTarget]:
        links = await self.client.hgetall(self._prefix + _join_key(feedback))
        return _targets(feedback, cast(dict[str, str], links))

    async def _unit_updates(self, ops: _Ops, deltas: BatchDeltas, batch: str) -> None:
        """Run the unit-totals script (once per batch and chunk) and queue the unit-level sums."""
        items = list(deltas.units.items())
        for chunk_index, start in enumerate(range(0, len(items), _UNITS_PER_SCRIPT)):
            chunk = items[start : start + _UNITS_PER_SCRIPT]
            keys = [self._prefix + f"batch:{batch}:units:{chunk_index}"]
            args: list[str | int] = [self._retention_ms, _GUARD_TTL_MS]
            for (experiment, phase, arm, unit), unit_deltas in chunk:
                keys += [
                    self._key(experiment, phase, "u", arm, unit),
                    self._key(experiment, phase, "ua", unit),
                ]
                args += [arm, len(unit_deltas)]
                for counter, delta in unit_deltas.items():
                    args += [counter, repr(float(delta))]
            results = await self.client.eval(UPDATE_UNITS_ONCE, len(keys), *keys, *args)
            for ((experiment, phase, arm, _), unit_deltas), values in zip(chunk, results, strict=True):
                created, crossover, *totals = values
                new_values = {c: float(v) for c, v in zip(unit_deltas, totals, strict=True)}
                sums_key = self._key(experiment, phase, "units", arm)
                for key, value in unit_moment_deltas(bool(created), new_values, unit_deltas).items():
                    if value != 0.0:
                        ops.add("hf", sums_key, key, repr(value))
                if crossover:
                    ops.add("hf", self._key(experiment, phase, "counters"), COUNTER_CROSSOVERS, 1)

    def _sums(self, ops: _Ops, deltas: BatchDeltas) -> None:
        for (experiment, phase, arm, metric), (n, total, total_sq) in deltas.moments.items():
            key = self._key(experiment, phase, "moments", arm)
            ops.add("hf", key, metric + _SEP + "n", repr(n))
            ops.add("hf", key, metric + _SEP + "s", repr(total))
            ops.add("hf", key, metric + _SEP + "ss", repr(total_sq))
        for (experiment, phase, arm), counts in deltas.histograms.items():
            key = self._key(experiment, phase, "hist", arm)
            for bucket, count in counts.items():
                ops.add("hi", key, bucket, count)
        for (experiment, phase, arm), label_counts in deltas.labels.items():
            key = self._key(experiment, phase, "labels", arm)
            for (output, label), count in label_counts.items():
                ops.add("hi", key, output + _SEP + label, count)
        for (experiment, phase), values in deltas.counters.items():
            for name, value in values.items():
                ops.add("hf", self._key(experiment, phase, "counters"), name, repr(value))
        for experiment, phase, arm in {key[:3] for key in deltas.units} | set(deltas.histograms):
            ops.add("sa", self._key(experiment, phase, "arms"), arm)
        for experiment, phase in deltas.phases:
            ops.add("sa", self._key(experiment, "phases"), phase)

    async def phase_data(self, experiment: str, phase: int) -> PhaseData:
        arms = sorted(cast(set[str], await self.client.smembers(self._key(experiment, phase, "arms"))))
        pipe = self.client.pipeline(transaction=False)
        for arm in arms:
            for kind in ("moments", "hist", "labels", "units"):
                pipe.hgetall(self._key(experiment, phase, kind, arm))
        pipe.hgetall(self._key(experiment, phase, "counters"))
        replies: list[dict[str, str]] = await pipe.execute()
        moments: dict[str, dict[str, RawMoments]] = {}
        histograms: dict[str, dict[int, int]] = {}
        labels: dict[str, dict[str, dict[str, int]]] = {}
        unit_sums: dict[str, dict[str, object]] = {}
        for index, arm in enumerate(arms):
            raw_moments, raw_hist, raw_labels, raw_units = replies[4 * index : 4 * index + 4]
            moments[arm] = _moments(raw_moments)
            histograms[arm] = {int(b): int(c) for b, c in raw_hist.items()}
            for field, count in raw_labels.items():
                output, _, label = field.partition(_SEP)
                labels.setdefault(arm, {}).setdefault(output, {})[label] = int(count)
            unit_sums[arm] = {key: _float(value) for key, value in raw_units.items()}
        counters = {name: float(value) for name, value in replies[-1].items()}
        return build_phase_data(experiment, phase, moments, histograms, labels, unit_sums, counters)

    async def phases(self, experiment: str) -> list[int]:
        return sorted(
            int(p) for p in cast(set[str], await self.client.smembers(self._key(experiment, "phases")))
        )

    async def add_decision(self, decision: Decision) -> None:
        key = self._key(decision.experiment, "decisions")
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(key, orjson.dumps(decision.to_dict()).decode())
        pipe.ltrim(key, -DECISIONS_KEPT, -1)
        await pipe.execute()

    async def decisions(self, experiment: str, limit: int = 1000) -> list[Decision]:
        rows = await self.client.lrange(self._key(experiment, "decisions"), -limit, -1)
        return [Decision.from_dict(orjson.loads(row)) for row in rows]

    async def load_state(self, key: str) -> dict[str, Any] | None:
        payload = await self.client.hget(self._prefix + "state:" + key, "payload")
        return dict(orjson.loads(payload)) if payload else None

    async def save_state(self, key: str, payload: Mapping[str, Any]) -> bool:
        document = orjson.dumps(dict(payload)).decode()
        saved = await self.client.eval(
            SAVE_STATE, 1, self._prefix + "state:" + key, int(payload["revision"]), document
        )
        return bool(saved)

    async def export_rows(self, experiment: str, kind: EventKind) -> list[dict[str, Any]]:
        rows, _ = await self.export_rows_after(experiment, kind)
        return rows

    async def export_rows_after(
        self, experiment: str, kind: EventKind, cursor: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """Stream entries after `cursor`, the id of the last entry read (stream ids only grow)."""
        key = self._key(experiment, "raw", kind)
        rows: list[dict[str, Any]] = []
        start = "(" + cursor if cursor else "-"
        while True:
            page = cast(
                list[tuple[str, dict[str, str]]],
                await self.client.xrange(key, min=start, max="+", count=_EXPORT_PAGE),
            )
            rows.extend(typed_row(kind, fields) for _, fields in page)
            if page:
                cursor = page[-1][0]
            if len(page) < _EXPORT_PAGE:
                return rows, cursor
            start = "(" + cursor

    def lease(self, name: str, ttl: float, owner: str) -> Lease:
        return RedisLease(lambda: self.client, self._prefix + "lease:" + name, ttl, owner)


def _float(value: str) -> float:
    """A stored number; NaN for anything else (the analysis then leaves its metric out)."""
    try:
        return float(value)
    except ValueError:
        return math.nan


def _moments(raw: Mapping[str, str]) -> dict[str, RawMoments]:
    sums: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        metric, _, stat = field.rpartition(_SEP)
        sums.setdefault(metric, {})[stat] = _float(value)
    return {metric: (s.get("n", 0.0), s.get("s", 0.0), s.get("ss", 0.0)) for metric, s in sums.items()}

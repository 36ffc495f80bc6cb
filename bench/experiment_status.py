"""How long an experiment's status takes on a large store: a full read of the raw events against
the incremental `EventCache`, side by side in one run.

    python bench/experiment_status.py [--events 1000000] [--refresh 10000] [--json]

Builds a SQLite store in a temporary directory with about `--events` events of one A/B test (each
unit: two exposures and two outcomes; one in five converts), through the store's own write path, so
the statistics and raw rows are what a gateway writes. Then times `status_of` three ways: reading
every raw event (what each admin API status request did before the cache), the cache's first call
(which reads everything once), and the cache after `--refresh` more events were written (what every
later request costs). The two statuses are checked equal, so a fast answer cannot be a wrong one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.analysis import status_of  # noqa: E402 - after the path is set
from experiments.config import AbConfig  # noqa: E402
from experiments.event_cache import EventCache  # noqa: E402
from experiments.events import Event, Exposure, Feedback, Outcome  # noqa: E402
from experiments.splits import AbSplit  # noqa: E402
from experiments.store.sqlite import SqliteEventStore  # noqa: E402

CONFIG = AbConfig.model_validate(
    {
        "kind": "ab",
        "unit": "header:x-user-id",
        "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
        "metrics": ["latency", "error_rate", "latency_p99", "feedback:conversion"],
        "expected_units": 200_000,
    }
)
# Events per write: the recorder's groups are smaller, but the bench times reads, not writes.
_WRITE_BATCH = 20_000


def _events(split: AbSplit, first_unit: int, units: int, rng: np.random.Generator) -> list[Event]:
    events: list[Event] = []
    for i in range(first_unit, first_unit + units):
        unit, now = f"user-{i}", 1000.0 + i * 0.01
        arm = split.arm_of(unit)
        for r in range(2):
            request = f"{i}-{r}"
            events.append(Exposure("exp", arm, unit, request, now + r))
            latency, failed = float(rng.lognormal(-3.0, 0.5)), bool(rng.random() < 0.01)
            events.append(Outcome(request, "exp", arm, unit, now + r + 0.05, latency, 200, failed))
        if rng.random() < 0.2:
            events.append(Feedback("conversion", 1.0, now + 2.5, request_id=f"{i}-0"))
    return events


async def _write(store: SqliteEventStore, events: list[Event]) -> int:
    for start in range(0, len(events), _WRITE_BATCH):
        await store.write(events[start : start + _WRITE_BATCH])
    return len(events)


async def _timed_status(
    store: SqliteEventStore, split: AbSplit, cache: EventCache | None
) -> tuple[float, bytes]:
    started = time.perf_counter()
    status = await status_of("exp", CONFIG, split, store, now=1e9, cache=cache)
    return time.perf_counter() - started, status.to_json()


async def measure(events: int, refresh: int) -> dict[str, float]:
    rng, split = np.random.default_rng(1), AbSplit("exp", CONFIG)
    per_unit = 4.2  # two exposures, two outcomes and a fifth of a conversion
    units, more = int(events / per_unit), max(1, int(refresh / per_unit))
    with tempfile.TemporaryDirectory() as directory:
        async with SqliteEventStore(Path(directory) / "events.db") as store:
            written = 0
            for start in range(0, units, 50_000):
                written += await _write(store, _events(split, start, min(50_000, units - start), rng))
            cache = EventCache(store)
            full_s, _ = await _timed_status(store, split, None)
            first_s, _ = await _timed_status(store, split, cache)
            written += await _write(store, _events(split, units, more, rng))
            full_after_s, full = await _timed_status(store, split, None)
            cached_s, cached = await _timed_status(store, split, cache)
            if json.loads(full) != json.loads(cached):
                raise SystemExit("the cached status differs from a full read")
    return {
        "events": float(written),
        "full_read_s": full_after_s,
        "full_read_before_refresh_s": full_s,
        "cache_first_call_s": first_s,
        "cache_refresh_s": cached_s,
        "speedup": full_after_s / cached_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--refresh", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.events, args.refresh))
    if args.json:
        print(json.dumps(result))
        return
    print(f"store: {result['events']:,.0f} events (exposures, outcomes, feedback) in SQLite")
    print(f"status, full read of the raw events:       {result['full_read_s']:8.2f} s")
    print(f"status, cache's first call (reads all):    {result['cache_first_call_s']:8.2f} s")
    print(f"status, cache after {args.refresh:,} new events: {result['cache_refresh_s']:8.2f} s")
    print(f"speed-up of a refresh: {result['speedup']:.1f}x")


if __name__ == "__main__":
    main()

"""kill -9 under load loses no more experiment events than the recorder's configured window.

A real gateway process with the SQLite event store serves an A/B test to many concurrent clients;
each answer names its exposure (x-turnout-exposure-id), which the gateway recorded before answering.
The gateway is killed with SIGKILL while the load runs, then started again (it replays its journal
into the store) and stopped. Every acknowledged exposure missing from the store then was lost; the
recorder promises fewer than `flush_events` events lost (the group being filled), so fewer exposures.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conftest import gateway_config
from tests.support.processes import Process, start_gateway

# A window small enough that writing to the store alone (no journal) loses more than it allows.
FLUSH_EVENTS = 64
FLUSH_INTERVAL = "50ms"
LOSS_BOUND = FLUSH_EVENTS
# Concurrent clients: enough to keep the gateway busy on a shared 2-core machine.
CLIENTS = 24
# Load before the kill: long enough for several write rounds and a steady backlog.
LOAD_BEFORE_KILL_S = 2.0
# Fewer acknowledged exposures than this and the test would not load the recorder at all.
MIN_ACKNOWLEDGED = 4 * LOSS_BOUND
# Room for every event of the run: a full queue drops events on purpose (counted in the recorder's
# `dropped`, never waited on), and that back-pressure loss is not what this test bounds. A fast
# machine answers about 6,000 requests a second here, two events each, quicker than SQLite writes.
CAPACITY = 1_000_000


def _config(upstream: Process, db: Path) -> dict[str, Any]:
    config = gateway_config(
        [f"127.0.0.1:{upstream.port}"],
        routes=[{"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}],
    )
    config["state"] = {
        "sqlite_path": str(db),
        "recorder": {"flush_interval": FLUSH_INTERVAL, "flush_events": FLUSH_EVENTS, "capacity": CAPACITY},
    }
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": "header:x-user-id",
            "arms": {"control": {"cluster": "up"}, "treatment": {"cluster": "up"}},
        }
    }
    return config


async def _client(session: aiohttp.ClientSession, url: str, index: int, acknowledged: set[str]) -> None:
    sent = 0
    while True:
        sent += 1
        try:
            async with session.get(url, headers={"x-user-id": f"c{index}-{sent % 50}"}) as response:
                await response.read()
                if response.status == 200:
                    acknowledged.add(response.headers["x-turnout-exposure-id"])
        except (TimeoutError, aiohttp.ClientError):
            return  # the gateway is gone


async def test_sigkill_under_load_loses_at_most_the_configured_window(
    tmp_path: Path, session_logs: Path, upstream_a: Process
) -> None:
    db = tmp_path / "events.db"
    config = _config(upstream_a, db)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    acknowledged: set[str] = set()
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            clients = [
                asyncio.create_task(_client(session, f"{gateway.url}/echo", i, acknowledged))
                for i in range(CLIENTS)
            ]
            started = time.monotonic()
            await asyncio.sleep(LOAD_BEFORE_KILL_S)
            in_flight = sum(1 for task in clients if not task.done())
            gateway.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(gateway.proc.wait, 10)
            await asyncio.gather(*clients)
            elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            gateway.kill()
    assert in_flight == CLIENTS  # the kill landed under load
    assert len(acknowledged) >= MIN_ACKNOWLEDGED, f"only {len(acknowledged)} answers in {elapsed:.1f} s"
    restarted = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    assert restarted.stop() == 0  # the journal was replayed at start; SIGTERM writes the rest
    with sqlite3.connect(db) as store:
        stored = {row[0] for row in store.execute("SELECT exposure_id FROM exposures")}
    lost = acknowledged - stored
    assert len(lost) <= LOSS_BOUND, (
        f"{len(lost)} of {len(acknowledged)} acknowledged exposures lost (window: {LOSS_BOUND} events)"
    )

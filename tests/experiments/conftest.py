"""Fixtures for the experiments package: a private redis-server, both event stores, request contexts,
and a traffic simulator that feeds a store through a split (assignment, exposure, outcome)."""

from __future__ import annotations

import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments.events import Event, exposure_for, outcome_for
from experiments.splits.base import Split
from experiments.store.base import EventStore
from experiments.store.redis import RedisEventStore
from experiments.store.sqlite import SqliteEventStore
from gateway.core.context import Principal, RequestContext
from tests.support.redis_server import private_redis_server

# A private redis-server starts in well under a second; this leaves room on a loaded 2-core machine.
REDIS_START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server of our own on a free loopback port, never the machine's 6379."""
    with private_redis_server() as url:
        yield url


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    async with SqliteEventStore(tmp_path / "events.db") as store:
        yield store


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisEventStore]:
    # A fresh key prefix per test keeps tests apart on the shared server.
    async with RedisEventStore(redis_url, prefix=f"t{uuid.uuid4().hex[:12]}:") as store:
        yield store


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    """Each test using it runs against both stores."""
    if request.param == "sqlite":
        async with SqliteEventStore(tmp_path / "events.db") as sqlite:
            yield sqlite
    else:
        url = request.getfixturevalue("redis_url")
        async with RedisEventStore(url, prefix=f"t{uuid.uuid4().hex[:12]}:") as shared:
            yield shared


def make_context(
    headers: Mapping[str, str] | None = None,
    *,
    principal: Principal | None = None,
    query: str = "",
    state: dict[str, Any] | None = None,
    request_id: str = "",
) -> RequestContext:
    return RequestContext(
        method="POST",
        path="/v2/models/m/infer",
        query=query,
        headers=dict(headers or {}),
        client_ip="127.0.0.1",
        started=time.monotonic(),
        request_id=request_id,
        principal=principal,
        state=state if state is not None else {},
    )


@pytest.fixture
def context() -> Callable[..., RequestContext]:
    return make_context


Simulate = Callable[..., Awaitable[int]]


async def simulate_traffic(
    store: EventStore,
    split: Split,
    units: Sequence[str],
    *,
    requests_per_unit: int = 3,
    error_rate: Mapping[str, float] | None = None,
    median_latency: Mapping[str, float] | None = None,
    rng: np.random.Generator,
    now: float = 1000.0,
    batch: int = 2000,
) -> int:
    """Each unit sends `requests_per_unit` requests through `split`; outcomes draw errors and lognormal
    latencies by the arm that served them. Events go to the store directly, in batches."""
    errors = dict(error_rate or {})
    medians = dict(median_latency or {})
    events: list[Event] = []
    count = 0
    for unit in units:
        ctx = make_context({"x-user-id": unit})
        for _ in range(requests_per_unit):
            assignment = split.choose(ctx)
            request_id = uuid.uuid4().hex
            failed = bool(rng.random() < errors.get(assignment.arm, 0.0))
            latency = float(rng.lognormal(math.log(medians.get(assignment.arm, 0.05)), 0.3))
            events.append(exposure_for(assignment, request_id, now))
            events.append(
                outcome_for(assignment, request_id, now, latency_s=latency, status=500 if failed else 200)
            )
            count += 1
            if len(events) >= batch:
                await store.write(events)
                events = []
    if events:
        await store.write(events)
    return count


@pytest.fixture
def simulate() -> Simulate:
    return simulate_traffic

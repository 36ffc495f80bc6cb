"""The sweeper of overdue upstream responses: it enforces request timeouts while exchanges are in
flight, and sleeps, without waking the process, while none is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from gateway.config import ClusterConfig
from gateway.core.errors import GatewayTimeout
from gateway.internal_client import send_to_cluster
from gateway.runtime import build_cluster
from tests.support.processes import Process

# Far beyond a few 10 ms sweeps even on a loaded machine; only for waiting, never asserted.
PATIENCE_S = 5.0


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_the_sweeper_sleeps_while_idle_and_wakes_for_the_next_exchange(upstream_a: Process) -> None:
    config = ClusterConfig.model_validate(
        {
            "endpoints": [f"127.0.0.1:{upstream_a.port}"],
            "timeouts": {"request": "5s"},
            "retry": {"attempts": 0},
        }
    )
    cluster = build_cluster("up", config, None)
    await cluster.start()
    try:
        await eventually(lambda: cluster.deadline_sweeper_asleep)  # nothing in flight since the start
        with pytest.raises(GatewayTimeout):  # a parked sweeper still enforces this exchange's timeout
            await send_to_cluster(cluster, "GET", "/slow?ms=3000", [], b"", cluster.retry, 0.1)
        await eventually(lambda: cluster.deadline_sweeper_asleep)

        slow = asyncio.create_task(
            send_to_cluster(cluster, "GET", "/slow?ms=300", [], b"", cluster.retry, 5.0)
        )
        await eventually(lambda: not cluster.deadline_sweeper_asleep)  # awake while it is in flight
        assert (await slow).status == 200
        await eventually(lambda: cluster.deadline_sweeper_asleep)  # and asleep again once it is answered
    finally:
        await cluster.stop()

"""Publishing split state and adopting it on other replicas."""

from __future__ import annotations

import asyncio
import time

from experiments.config import AbConfig
from experiments.splits import AbSplit, SplitStatus
from experiments.store.base import EventStore
from experiments.sync import SplitStateSync

CONFIG = AbConfig.model_validate(
    {"kind": "ab", "unit": "header:x-user-id", "arms": {"a": {"cluster": "v1"}, "b": {"cluster": "v2"}}}
)


async def test_replicas_adopt_a_published_change(store: EventStore) -> None:
    here, there = AbSplit("exp", CONFIG), AbSplit("exp", CONFIG)
    publisher = SplitStateSync(store, {"exp": here})
    follower = SplitStateSync(store, {"exp": there}, interval=0.02)
    await follower.start()
    try:
        here.pause()
        assert await publisher.publish(here)
        deadline = time.monotonic() + 5
        while there.state.status is not SplitStatus.PAUSED:
            assert time.monotonic() < deadline, "the other replica never adopted the change"
            await asyncio.sleep(0.01)
        assert there.state.status is SplitStatus.PAUSED and there.state.revision == here.state.revision
    finally:
        await follower.stop()


async def test_a_losing_publish_adopts_the_winner(store: EventStore) -> None:
    first, second = AbSplit("exp", CONFIG), AbSplit("exp", CONFIG)
    first.set_weights({"a": 1, "b": 3})
    assert await SplitStateSync(store, {"exp": first}).publish(first)
    second.pause()  # made at the same time on another replica: the same revision number
    assert not await SplitStateSync(store, {"exp": second}).publish(second)
    assert second.state.status is SplitStatus.RUNNING
    assert second.state.weights == (("a", 1.0), ("b", 3.0)) and second.current_phase == 1

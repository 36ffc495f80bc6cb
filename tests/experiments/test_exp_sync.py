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


async def test_a_reload_that_adds_a_split_during_a_poll_does_not_break_it(store: EventStore) -> None:
    # The splits mapping is the runtime's: a reload adds an experiment while the poll awaits the
    # store's answer for the first one. The poll finishes, and the next one sees the new split.
    splits = {"exp": AbSplit("exp", CONFIG)}
    publisher = AbSplit("exp", CONFIG)
    publisher.pause()
    assert await SplitStateSync(store, {"exp": publisher}).publish(publisher)

    class ReloadDuringRead:
        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def load_state(self, name: str) -> object:
            splits.setdefault("added", AbSplit("added", CONFIG))
            return await store.load_state(name)

    sync = SplitStateSync(ReloadDuringRead(), splits)  # type: ignore[arg-type]
    assert await sync.poll_once() == ["exp"]
    assert await sync.poll_once() == []
    assert set(splits) == {"exp", "added"}

"""The batcher's pure parts: config checks, queue policy, the priority queue, slots, signatures."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.core.context import Principal, RequestContext
from gateway.core.protocols.kserve_v1 import V1Request
from gateway.core.protocols.oip_v2 import InferRequest, RequestedOutput, Tensor
from plugins.batching import BatchingConfig
from plugins.batching.member import Member, MemberState
from plugins.batching.oip_format import OipBatchFormat
from plugins.batching.policy import QueuePolicy
from plugins.batching.queue import MemberQueue
from plugins.batching.slots import BatchSlots
from plugins.batching.v1_format import V1BatchFormat

OIP = OipBatchFormat(binary_tensors=False)


def config(**options: Any) -> BatchingConfig:
    return BatchingConfig.model_validate({"max_batch_size": 8, **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"preferred_batch_sizes": [4, 16]}, "exceed max_batch_size 8"),
        ({"priority_levels": 2, "default_priority": 3}, "default_priority must be between 1 and"),
        ({"priority_levels": 2, "priority_by_tier": {"gold": 0}}, "tier 'gold' has level 0, outside 1..2"),
        ({"max_queue_delay": "soon"}, "invalid duration 'soon'"),
        ({"queue_full_action": "drop"}, "reject_429"),
        ({"adaptive": {"target_latency": "0ms"}}, "target_latency must be above zero"),
        (
            {"adaptive": {"target_latency": "5ms", "min_batch_size": 9}},
            "min_batch_size exceeds max_batch_size",
        ),
        ({"adaptive": {"target_latency": "5ms", "decrease_factor": 1.0}}, "less than 1"),
        ({"max_batch_sizes": 4}, "Extra inputs are not permitted"),
    ],
)
def test_config_refuses_inconsistent_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(**options)


def test_config_defaults_and_normalisation() -> None:
    settings = config(preferred_batch_sizes=[8, 2, 4, 4], priority_header="X-Priority", max_queue_delay="3ms")
    assert settings.preferred_batch_sizes == (2, 4, 8)
    assert settings.priority_header == "x-priority"
    assert settings.max_queue_delay == pytest.approx(0.003)
    assert settings.max_inflight_batches_per_endpoint == 2
    assert config().default_level == 1
    assert config(priority_levels=4).default_level == 2
    assert config(priority_levels=3, default_priority=3).default_level == 3


def ctx(headers: dict[str, str] | None = None, tier: str | None = None) -> RequestContext:
    principal = Principal("caller", tier=tier) if tier else None
    return RequestContext("POST", "/", "", headers or {}, "127.0.0.1", 0.0, principal=principal)


def test_priority_comes_from_the_tier_and_the_header_may_only_lower_it() -> None:
    policy = QueuePolicy(config(priority_levels=3, priority_by_tier={"gold": 1, "batch": 3}))
    assert policy.level(ctx()) == 2
    assert policy.level(ctx(tier="gold")) == 1
    assert policy.level(ctx(tier="batch")) == 3
    assert policy.level(ctx(tier="unknown")) == 2
    assert policy.level(ctx({"x-turnout-priority": "3"})) == 3
    assert policy.level(ctx({"x-turnout-priority": "1"})) == 2, "an untrusted header cannot jump the queue"
    assert policy.level(ctx({"x-turnout-priority": "2"}, tier="gold")) == 2
    trusting = QueuePolicy(config(priority_levels=3, trust_priority_header=True))
    assert trusting.level(ctx({"x-turnout-priority": "1"})) == 1
    ignoring = QueuePolicy(config(priority_levels=3, priority_header=None))
    assert ignoring.level(ctx({"x-turnout-priority": "3"})) == 2


def test_the_queue_timeout_header_may_only_shorten_the_default_unless_allowed() -> None:
    header = "x-turnout-queue-timeout"
    strict = QueuePolicy(config(default_queue_timeout="200ms"))
    assert strict.timeout(ctx()) == pytest.approx(0.2)
    assert strict.timeout(ctx({header: "50ms"})) == pytest.approx(0.05)
    assert strict.timeout(ctx({header: "2s"})) == pytest.approx(0.2)
    lenient = QueuePolicy(config(default_queue_timeout="200ms", allow_timeout_override=True))
    assert lenient.timeout(ctx({header: "2s"})) == pytest.approx(2.0)
    unbounded = QueuePolicy(config())
    assert unbounded.timeout(ctx()) is None
    assert unbounded.timeout(ctx({header: "0.5"})) == pytest.approx(0.5)


def features(rows: int, width: int = 3, datatype: str = "FP32") -> Tensor:
    return Tensor("x", datatype, np.zeros((rows, width), np.float32 if datatype == "FP32" else np.float64))


def test_signatures_ignore_rows_and_encodings_but_not_meaning() -> None:
    base = OIP.prepare(InferRequest([features(2)]))
    assert base.rows == 2
    same = [
        InferRequest([features(5)]),
        InferRequest([features(1)], binary_output=True),  # each member's answer is encoded as it asked
        InferRequest([features(1)], id="abc"),
    ]
    for request in same:
        assert OIP.prepare(request).signature == base.signature
    different = [
        InferRequest([features(2, width=4)]),
        InferRequest([features(2, datatype="FP64")]),
        InferRequest([features(2)], outputs=[RequestedOutput("y")]),
        InferRequest([features(2)], parameters={"temperature": 1}),
        InferRequest([features(2)], parameters={"temperature": True}),
        InferRequest([features(2), Tensor("mask", "BOOL", np.ones((2, 1), bool))]),
    ]
    signatures = {OIP.prepare(request).signature for request in different}
    assert base.signature not in signatures and len(signatures) == len(different)
    reordered = InferRequest([Tensor("mask", "BOOL", np.ones((4, 1), bool)), features(4)])
    assert OIP.prepare(reordered).signature == OIP.prepare(different[-1]).signature


def test_v1_signatures_follow_kind_and_example_shape() -> None:
    v1 = V1BatchFormat()
    words = v1.prepare(V1Request(np.asarray([["a"], ["bbb"]])))
    assert words.signature == v1.prepare(V1Request(np.asarray([["cccccc"]]))).signature
    numbers = v1.prepare(V1Request(np.ones((3, 2))))
    assert numbers.rows == 3
    assert numbers.signature != v1.prepare(V1Request(np.ones((3, 2), np.int64))).signature
    assert numbers.signature != v1.prepare(V1Request(np.ones((3, 4)))).signature


class Queue:
    """A MemberQueue with members made from (rows, level) pairs, and their names."""

    def __init__(self, levels: int = 2) -> None:
        self.queue = MemberQueue(levels)
        self.names: dict[int, str] = {}
        self._loop = asyncio.new_event_loop()

    def add(self, name: str, rows: int, level: int = 0) -> Member:
        member = Member(OIP.prepare(InferRequest([features(rows)])), level, 0.0, self._loop.create_future())
        self.names[id(member)] = name
        self.queue.push(member)
        return member

    def take(self, cap: int, preferred: tuple[int, ...] = ()) -> list[str]:
        return [self.names[id(member)] for member in self.queue.take(cap, preferred)]

    def close(self) -> None:
        self._loop.close()


@pytest.fixture
def queue() -> Any:
    made = Queue()
    yield made
    made.close()


def test_batches_take_higher_levels_first_then_arrival_order(queue: Queue) -> None:
    queue.add("low-1", 1, level=1)
    queue.add("high-1", 2)
    queue.add("low-2", 1, level=1)
    queue.add("high-2", 1)
    assert (queue.queue.count, queue.queue.rows) == (4, 5)
    assert queue.take(cap=4) == ["high-1", "high-2", "low-1"]
    assert queue.take(cap=4) == ["low-2"]
    assert queue.take(cap=4) == []
    assert (queue.queue.count, queue.queue.rows) == (0, 0)


def test_a_request_that_does_not_fit_ends_the_batch_and_an_oversized_one_goes_alone(queue: Queue) -> None:
    queue.add("a", 3)
    queue.add("b", 3)
    queue.add("c", 1)
    assert queue.take(cap=4) == ["a"], "b does not fit and c does not overtake it"
    queue.add("huge", 10)
    assert queue.take(cap=4) == ["b", "c"]
    assert queue.take(cap=4) == ["huge"]


def test_preferred_sizes_cut_the_batch_when_a_prefix_reaches_one(queue: Queue) -> None:
    for name in "abcdef":
        queue.add(name, 1)
    assert queue.take(cap=8, preferred=(4,)) == ["a", "b", "c", "d"]
    queue.add("g", 3)
    assert queue.take(cap=8, preferred=(4,)) == ["e", "f", "g"], "no prefix makes 4: take what fits"


def test_removed_and_delayed_members(queue: Queue) -> None:
    first = queue.add("first", 1)
    queue.add("second", 1)
    gone = queue.add("gone", 1)
    queue.add("third", 1)
    assert queue.queue.remove(gone) and not queue.queue.remove(gone)
    queue.queue.delay(first)
    assert queue.queue.oldest_arrival() == 0.0
    assert queue.take(cap=8) == ["second", "third", "first"], "a delayed member waits behind its level"
    cancelled = queue.add("cancelled", 1)
    cancelled.future.cancel()
    assert queue.take(cap=8) == [], "a member cancelled this turn is not taken"
    assert queue.queue.oldest_arrival() == 0.0


def test_members_that_left_are_forgotten_under_sustained_load(queue: Queue) -> None:
    waiting_long = queue.add("low", 1, level=1)
    for round_ in range(300):
        for index in range(4):
            queue.add(f"high-{round_}-{index}", 1)
        assert len(queue.take(cap=4)) == 4
        assert queue.queue.held <= 2 * (2 * queue.queue.count + 64) + 2 * queue.queue.count
    assert waiting_long.state is MemberState.QUEUED
    assert queue.take(cap=4) == ["low"]


async def test_slots_scale_with_endpoints_and_hand_over_in_order() -> None:
    endpoints = [1]
    slots = BatchSlots(2, lambda: endpoints[0])
    await slots.acquire()
    await slots.acquire()
    assert not slots.free()
    order: list[str] = []

    async def wait(name: str) -> None:
        await slots.acquire()
        order.append(name)

    waiting = [asyncio.ensure_future(wait(name)) for name in ("first", "second")]
    await asyncio.sleep(0)
    assert order == []
    slots.release()
    await asyncio.sleep(0)
    assert order == ["first"]
    endpoints[0] = 2  # discovery added an endpoint: the next acquire sees two more slots
    third = asyncio.ensure_future(wait("third"))
    await asyncio.gather(*waiting, third)
    assert sorted(order) == ["first", "second", "third"] and slots.active == 4
    endpoints[0] = 0
    assert slots.capacity == 2, "a cluster with no endpoint still gets its per-endpoint share"
    with pytest.raises(RuntimeError):
        for _ in range(5):
            slots.release()

"""Adaptive batch sizing (AIMD): the rule on its own, and the batcher converging under load.

The convergence tests simulate the model with a fake `send` whose latency grows with the batch's
rows (it sleeps per row). That is acceptable here because what is under test is the control loop,
not any I/O; the real upstream path is covered by the tests against a worker process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import numpy as np
from prometheus_client import CollectorRegistry

from gateway.core.context import RequestContext
from gateway.core.protocols.oip_v2 import InferRequest, InferResponse, Tensor, decode_request, encode_response
from plugins.batching import (
    AdaptiveConfig,
    Batcher,
    BatchingConfig,
    BatchingMetrics,
    BatchUpstream,
    UpstreamReply,
)
from plugins.batching.adaptive import AimdBatchSize

LABELS = {"model": "m", "cluster": "sim"}


def controller(**options: object) -> AimdBatchSize:
    config = AdaptiveConfig.model_validate({"target_latency": "10ms", **options})
    return AimdBatchSize(config, max_batch_size=32)


def test_the_cap_starts_at_max_batch_size_unless_told() -> None:
    assert controller().cap == 32
    assert controller(initial_batch_size=4).cap == 4


def test_full_batches_within_the_objective_raise_the_cap_additively() -> None:
    aimd = controller(initial_batch_size=4, increase_step=2)
    aimd.observe(0.005, rows=4, epoch=aimd.epoch)
    assert aimd.cap == 6
    aimd.observe(0.005, rows=3, epoch=aimd.epoch)  # the cap did not bind: no evidence for more
    assert aimd.cap == 6
    for _ in range(50):
        aimd.observe(0.005, rows=aimd.cap, epoch=aimd.epoch)
    assert aimd.cap == 32


def test_a_slow_batch_cuts_the_cap_multiplicatively_from_its_own_size() -> None:
    aimd = controller()
    aimd.observe(0.020, rows=32, epoch=aimd.epoch)
    assert aimd.cap == 16
    aimd.observe(0.020, rows=6, epoch=aimd.epoch)  # 6 rows were already too slow
    assert aimd.cap == 3
    for _ in range(5):
        aimd.observe(0.020, rows=aimd.cap, epoch=aimd.epoch)
    assert aimd.cap == 1, "never below min_batch_size"
    gentle = controller(decrease_factor=0.9, min_batch_size=8)
    gentle.observe(0.020, rows=32, epoch=gentle.epoch)
    assert gentle.cap == 28


def test_batches_formed_before_a_cut_do_not_count() -> None:
    aimd = controller()
    before = aimd.epoch
    aimd.observe(0.020, rows=32, epoch=before)
    aimd.observe(0.020, rows=32, epoch=before)  # in flight when the cap was cut: already accounted
    aimd.observe(0.001, rows=32, epoch=before)
    assert aimd.cap == 16


def simulated_model(per_row_s: float, sizes: list[int]) -> BatchUpstream:
    """A model whose batch takes `per_row_s` per row; it records each batch's rows in `sizes`."""

    async def send(path: str, body: bytes, content_type: str, headers: Mapping[str, str]) -> UpstreamReply:
        rows = decode_request(body).inputs[0].shape[0]
        sizes.append(rows)
        await asyncio.sleep(per_row_s * rows)
        answer = InferResponse("m", [Tensor("y", "FP32", np.zeros(rows, np.float32))])
        return 200, {"Content-Type": "application/json"}, encode_response(answer).body

    return BatchUpstream(send)


async def drive(batcher: Batcher, until: int, sizes: list[int], callers: int = 64) -> None:
    """Keep `callers` requests of one row in flight until `until` batches were sent."""
    context = RequestContext("POST", "/v2/models/m/infer", "", {}, "127.0.0.1", 0.0, cluster="sim", model="m")
    request = InferRequest([Tensor("x", "FP32", np.ones((1, 4), np.float32))])
    deadline = time.monotonic() + 10

    async def caller() -> None:
        while len(sizes) < until and time.monotonic() < deadline:
            answer = await batcher.submit(context, request)
            assert answer.status == 200

    await asyncio.gather(*(caller() for _ in range(callers)))


def adaptive_batcher(
    target: str, upstream: BatchUpstream, registry: CollectorRegistry, **adaptive: object
) -> Batcher:
    config = BatchingConfig.model_validate(
        {
            "max_batch_size": 32,
            "max_queue_delay": "1ms",
            "max_inflight_batches_per_endpoint": 1,
            "adaptive": {"target_latency": target, **adaptive},
        }
    )
    return Batcher(config, {"sim": upstream}, BatchingMetrics(registry))


async def test_under_a_loose_objective_the_cap_climbs_to_max_batch_size() -> None:
    registry, sizes = CollectorRegistry(), list[int]()
    upstream = simulated_model(0.00005, sizes)  # 32 rows take 1.6ms, far within 1s
    async with adaptive_batcher("1s", upstream, registry, initial_batch_size=1) as batcher:
        await drive(batcher, until=80, sizes=sizes)
    assert registry.get_sample_value("turnout_batch_size_limit", LABELS) == 32
    assert sizes[:3] == [1, 2, 3], "one row more per full batch"
    assert sizes[-1] == 32


async def test_under_a_tight_objective_the_cap_comes_down_and_stays_near_the_knee() -> None:
    registry, sizes = CollectorRegistry(), list[int]()
    upstream = simulated_model(0.0005, sizes)  # 4ms objective: the knee is at 8 rows or a little fewer
    async with adaptive_batcher("4ms", upstream, registry) as batcher:
        await drive(batcher, until=150, sizes=sizes)
    cap = registry.get_sample_value("turnout_batch_size_limit", LABELS)
    assert sizes[0] == 32, "starts as a static batcher"
    assert cap is not None and 1 <= cap <= 9
    recent = sizes[-50:]
    assert max(recent) <= 9, recent

"""Shadow traffic: the bounded queue, workers that send copies to a real loopback server, and the
comparison figures (class agreement, numeric differences, latency, mirror errors)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from experiments.config import ShadowConfig
from experiments.guardrails import ShadowTally
from experiments.outbound import OutboundRequest
from experiments.shadow import ShadowJob, ShadowMirror, ShadowQueue
from experiments.shadow_compare import ShadowComparison


def response(outputs: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"model_name": "risk", "outputs": outputs})


def probabilities(rows: list[list[float]]) -> dict[str, Any]:
    return {"name": "probabilities", "datatype": "FP32", "shape": [len(rows), len(rows[0])], "data": rows}


def scores(values: list[float]) -> dict[str, Any]:
    return {"name": "score", "datatype": "FP64", "shape": [len(values)], "data": values}


def test_classifier_agreement_by_argmax() -> None:
    comparison = ShadowComparison("sh", tolerance=1e-4)
    primary = response([probabilities([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])])
    same_classes = response([probabilities([[0.7, 0.3], [0.1, 0.9], [0.55, 0.45]])])
    one_flipped = response([probabilities([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])])
    assert comparison.record("v2", 200, primary, 0.010, 200, same_classes, 0.015)
    assert not comparison.record("v2", 200, primary, 0.010, 200, one_flipped, 0.013)
    figures = comparison.snapshot()["mirrors"]["v2"]
    assert figures["compared"] == 2 and figures["disagreements"] == 1 and figures["disagreement_rate"] == 0.5
    assert figures["classifier"] == {"rows": 6, "agreement_rate": pytest.approx(5 / 6)}
    assert figures["latency"]["mean_difference_s"] == pytest.approx(0.004)
    assert figures["numeric"]["max_abs_diff"] == pytest.approx(0.2, abs=1e-6)


def test_numeric_outputs_within_and_outside_tolerance() -> None:
    comparison = ShadowComparison("sh", tolerance=1e-3)
    primary = response([scores([1.0, 2.0, 0.0])])
    assert comparison.record("v2", 200, primary, 0.0, 200, response([scores([1.0005, 2.0, 0.0])]), 0.0)
    assert not comparison.record("v2", 200, primary, 0.0, 200, response([scores([1.1, 2.0, 0.0])]), 0.0)
    assert not comparison.record("v2", 200, primary, 0.0, 200, response([scores([1.0, 2.0])]), 0.0)
    numeric = comparison.snapshot()["mirrors"]["v2"]["numeric"]
    assert numeric["compared"] == 3 and numeric["within_tolerance_rate"] == pytest.approx(1 / 3)
    assert numeric["max_abs_diff"] == pytest.approx(0.1)
    assert numeric["max_rel_diff"] == pytest.approx(0.1)
    assert numeric["mean_abs_diff"] == pytest.approx((0.0005 / 3 + 0.1 / 3) / 2)
    assert comparison.tally("v2") == ShadowTally(3, 2)


def test_errors_and_status_mismatches() -> None:
    comparison = ShadowComparison("sh", tolerance=1e-4)
    ok = response([scores([1.0])])
    assert comparison.record("v2", 503, b"", 0.0, 200, ok, 0.0)  # the primary failed: nothing to compare
    assert not comparison.record("v2", 200, ok, 0.0, 500, b"boom", 0.0)
    assert not comparison.record("v2", 200, ok, 0.0, 400, b"bad", 0.0)
    comparison.record_failure("v2", 200)
    comparison.record_drop("v2")
    figures = comparison.snapshot()["mirrors"]["v2"]
    assert (
        figures["primary_errors"] == 1 and figures["mirror_errors"] == 2 and figures["status_mismatches"] == 1
    )
    assert figures["compared"] == 3 and figures["disagreements"] == 3 and figures["dropped"] == 1
    assert figures["mirror_error_rate"] == pytest.approx(2 / 4)
    assert comparison.tally() == ShadowTally(3, 3)


def test_non_oip_bodies_compare_as_bytes() -> None:
    comparison = ShadowComparison("sh", tolerance=1e-4)
    assert comparison.record("v2", 200, b"plain", 0.0, 200, b"plain", 0.0)
    assert not comparison.record("v2", 200, b"plain", 0.0, 200, b"other", 0.0)


def job(i: int, primary_body: bytes = b"") -> ShadowJob:
    return ShadowJob(
        "v2",
        "risk-v2",
        OutboundRequest("POST", "/v2/models/risk/infer", body=b"%d" % i),
        200,
        primary_body,
        0.01,
    )


async def test_the_queue_drops_and_counts_when_full() -> None:
    queue = ShadowQueue(3)
    assert [queue.offer(job(i)) for i in range(5)] == [True, True, True, False, False]
    stats = queue.stats()
    assert (stats.offered, stats.accepted, stats.dropped, stats.queued) == (5, 3, 2, 3)
    assert (await queue.take()).request.body == b"0"


@pytest.fixture
async def mirror_server() -> AsyncIterator[str]:
    """A mirror model that echoes a score equal to the request body's number."""

    async def infer(request: web.Request) -> web.Response:
        value = float(await request.read())
        if value < 0:
            return web.Response(status=500, body=b"negative")
        return web.Response(body=response([scores([value])]), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v2/models/risk/infer", infer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_workers_send_copies_and_compare(mirror_server: str) -> None:
    config = ShadowConfig.model_validate(
        {
            "kind": "shadow",
            "primary": {"cluster": "risk-v1"},
            "mirrors": [{"cluster": "risk-v2"}],
            "workers": 2,
        }
    )
    async with aiohttp.ClientSession() as session:

        async def send(cluster: str, request: OutboundRequest) -> tuple[int, bytes, float]:
            started = time.monotonic()
            async with session.request(
                request.method, mirror_server + request.path, data=request.body
            ) as reply:
                return reply.status, await reply.read(), time.monotonic() - started

        mirror = ShadowMirror("sh", config, send)
        await mirror.start()
        try:
            for i in range(20):
                primary = response([scores([float(i if i % 5 else i + 1)])])  # every fifth answer differs
                mirror.offer(job(i, primary))
            mirror.offer(job(-1, response([scores([1.0])])))  # the mirror fails on this one
            deadline = time.monotonic() + 10
            while mirror.comparison.tally().compared < 21:
                assert time.monotonic() < deadline, "the mirror copies were not all compared"
                await asyncio.sleep(0.01)
        finally:
            await mirror.stop()
    figures = mirror.comparison.snapshot()["mirrors"]["v2"]
    assert figures["compared"] == 21
    assert figures["disagreements"] == 4 + 1 and figures["mirror_errors"] == 1
    assert figures["latency"]["samples"] == 21

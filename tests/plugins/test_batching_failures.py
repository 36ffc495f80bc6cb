"""Failures around a batch: upstream errors reach every member, bad requests never join a batch.

The upstreams here are small aiohttp servers on loopback ports, run in the test's event loop, that
answer the way a broken or a KServe V1 model server would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.core.context import RequestContext
from gateway.core.errors import BadGateway, BadRequest, GatewayTimeout, ServiceUnavailable
from gateway.core.protocols.kserve_v1 import V1Request, decode_v1_request
from gateway.core.protocols.oip_v2 import InferRequest, Tensor, decode_request
from plugins.batching import Batcher, BatchingConfig, BatchingMetrics, BatchUpstream, UpstreamReply
from tests.support.processes import free_port

CLUSTER = "models"


class LoopbackModelServer:
    """An HTTP model server on a loopback port whose answers each test chooses."""

    def __init__(self, answer: Any) -> None:
        self.bodies: list[bytes] = []
        self._answer = answer
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> LoopbackModelServer:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        status, document = self._answer(body)
        return web.Response(status=status, body=orjson.dumps(document), content_type="application/json")


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def http_send(session: aiohttp.ClientSession, url: str) -> Any:
    async def send(path: str, body: bytes, content_type: str, headers: Mapping[str, str]) -> UpstreamReply:
        async with session.post(
            url + path, data=body, headers={"Content-Type": content_type, **headers}
        ) as r:
            return r.status, dict(r.headers), await r.read()

    return send


@asynccontextmanager
async def batching_to(
    client: aiohttp.ClientSession, answer: Any, metrics: BatchingMetrics | None = None
) -> AsyncIterator[tuple[LoopbackModelServer, Batcher]]:
    """A loopback model server answering with `answer(body)`, and a batcher that sends to it."""
    async with (
        LoopbackModelServer(answer) as server,
        Batcher(config(), {CLUSTER: BatchUpstream(http_send(client, server.url))}, metrics) as batcher,
    ):
        yield server, batcher


def context(path: str = "/v2/models/m/infer", headers: dict[str, str] | None = None) -> RequestContext:
    return RequestContext(
        "POST", path, "", headers or {}, "127.0.0.1", time.monotonic(), cluster=CLUSTER, model="m"
    )


def config(**options: Any) -> BatchingConfig:
    return BatchingConfig.model_validate({"max_batch_size": 32, "max_queue_delay": "20ms", **options})


def request(rows: int, width: int = 4) -> InferRequest:
    return InferRequest([Tensor("x", "FP32", np.arange(rows * width, dtype=np.float32).reshape(rows, width))])


def oip_answer(body: bytes, rows_delta: int = 0) -> tuple[int, dict[str, Any]]:
    """The sum of each row, as an OIP v2 model would answer (`rows_delta` breaks the row count)."""
    inputs = decode_request(body).inputs[0].data
    sums = inputs.sum(axis=1)
    if rows_delta:
        sums = np.concatenate([sums, np.zeros(rows_delta, np.float32)])
    output = {"name": "total", "datatype": "FP32", "shape": [len(sums)], "data": sums.tolist()}
    return 200, {"model_name": "m", "outputs": [output]}


async def test_an_upstream_error_status_reaches_every_member(client: aiohttp.ClientSession) -> None:
    failure = {"error": "model crashed", "code": "internal"}
    async with batching_to(client, lambda body: (500, failure)) as (server, batcher):
        pending = [batcher.submit(context(), request(rows)) for rows in (1, 2, 3)]
        answers = [await handle for handle in pending]
    assert len(server.bodies) == 1
    assert [answer.status for answer in answers] == [500, 500, 500]
    assert all(orjson.loads(answer.body) == failure for answer in answers)
    assert all(dict(answer.headers)["content-type"] == "application/json" for answer in answers)


async def test_an_upstream_that_cannot_be_reached_fails_every_member(client: aiohttp.ClientSession) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with Batcher(config(), {CLUSTER: BatchUpstream(http_send(client, closed))}) as batcher:
        pending = [batcher.submit(context(), request(1)) for _ in range(3)]
        for handle in pending:
            with pytest.raises(BadGateway, match="batched upstream call failed: ClientConnectorError"):
                await handle


async def test_a_gateway_error_from_send_reaches_every_member_as_is() -> None:
    async def times_out(
        path: str, body: bytes, content_type: str, headers: Mapping[str, str]
    ) -> UpstreamReply:
        raise GatewayTimeout("the cluster did not answer within 2s", headers={"x-cluster": "models"})

    errors: list[GatewayTimeout] = []
    async with Batcher(config(), {CLUSTER: BatchUpstream(times_out)}) as batcher:
        pending = [batcher.submit(context(), request(1)) for _ in range(2)]
        for handle in pending:
            with pytest.raises(GatewayTimeout, match="did not answer within 2s") as raised:
                await handle
            errors.append(raised.value)
    assert [error.headers for error in errors] == [{"x-cluster": "models"}] * 2
    assert errors[0] is not errors[1], "each caller raises its own exception object"


async def test_stop_fails_what_outlives_the_drain_timeout() -> None:
    async def stuck(path: str, body: bytes, content_type: str, headers: Mapping[str, str]) -> UpstreamReply:
        await asyncio.Event().wait()  # an upstream that never answers
        raise AssertionError("unreachable")

    settings = config(max_batch_size=1, max_inflight_batches_per_endpoint=1)
    batcher = Batcher(settings, {CLUSTER: BatchUpstream(stuck)})
    pending = [batcher.submit(context(), request(1)) for _ in range(3)]
    await asyncio.sleep(0.01)  # the first batch is in flight; the others wait for its slot
    await batcher.stop(drain_timeout=0.05)
    messages = []
    for handle in pending:
        with pytest.raises(ServiceUnavailable) as raised:
            await handle
        messages.append(raised.value.message)
    assert messages[0] == "the gateway stopped before the batch was answered"
    assert messages[1:] == ["the batcher stopped before this request was sent; retry"] * 2
    assert batcher.queued == 0 and batcher.batches_in_flight == 0


async def test_an_answer_with_the_wrong_row_count_is_a_bad_gateway(client: aiohttp.ClientSession) -> None:
    async with batching_to(client, lambda body: oip_answer(body, rows_delta=1)) as (_, batcher):
        pending = [batcher.submit(context(), request(rows)) for rows in (1, 2)]
        for handle in pending:
            with pytest.raises(BadGateway, match="batch of 3 rows with output 'total' of shape \\[4\\]"):
                await handle


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (InferRequest([Tensor("x", "FP32", np.array(1.0, np.float32))]), "shape [] has no batch dimension"),
        (
            InferRequest(
                [Tensor("x", "FP32", np.zeros((2, 4), np.float32)), Tensor("y", "INT64", np.zeros(3))]
            ),
            "inputs disagree on the batch size: 'x' has 2 rows, 'y' has 3",
        ),
        (InferRequest([Tensor("x", "FP32", np.zeros((0, 4), np.float32))]), "has 0 rows"),
        (V1Request({"a": np.asarray(5)}), "input 'a': a single value has no batch dimension"),
    ],
)
async def test_a_malformed_request_is_refused_before_joining_a_batch(
    client: aiohttp.ClientSession, bad: Any, message: str
) -> None:
    registry = CollectorRegistry()
    async with batching_to(client, oip_answer, BatchingMetrics(registry)) as (server, batcher):
        good = batcher.submit(context(), request(2))
        with pytest.raises(BadRequest) as refused:
            batcher.submit(context(), bad)
        answer = await good
    assert message in refused.value.message
    assert answer.status == 200 and answer.batch_members == 1
    assert len(server.bodies) == 1
    assert (
        registry.get_sample_value(
            "turnout_batch_rejections_total", {"model": "m", "cluster": CLUSTER, "reason": "invalid"}
        )
        == 1
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-turnout-priority": "urgent"}, "x-turnout-priority: 'urgent' is not a priority level; use 1"),
        ({"x-turnout-priority": "4"}, "is not a priority level; use 1 (first served) to 3"),
        ({"x-turnout-queue-timeout": "soon"}, "x-turnout-queue-timeout: invalid duration 'soon'"),
        ({"x-turnout-queue-timeout": "0ms"}, "a queue timeout must be above zero"),
    ],
)
async def test_bad_queue_headers_are_refused(headers: dict[str, str], message: str) -> None:
    async def never(path: str, body: bytes, content_type: str, headers: Mapping[str, str]) -> UpstreamReply:
        raise AssertionError("nothing should be sent")

    async with Batcher(config(priority_levels=3), {CLUSTER: BatchUpstream(never)}) as batcher:
        with pytest.raises(BadRequest) as refused:
            batcher.submit(context(headers=headers), request(1))
        assert batcher.queued == 0
    assert message in refused.value.message


def v1_answer(body: bytes) -> tuple[int, dict[str, Any]]:
    """A KServe V1 predictor: one prediction per instance, the sum of its values (columns summed)."""
    instances = decode_v1_request(body).instances
    predictions: list[Any]
    if isinstance(instances, dict):
        predictions = [{"total": int(sum(row))} for row in zip(*instances.values(), strict=True)]
    else:
        predictions = [float(value) for value in instances.reshape(len(instances), -1).sum(axis=1)]
    return 200, {"predictions": predictions}


async def test_kserve_v1_instances_batch_and_split(client: aiohttp.ClientSession) -> None:
    rows = [np.arange(rows * 3, dtype=np.float64).reshape(rows, 3) + rows for rows in (1, 2, 3)]
    path = "/v1/models/m:predict"
    async with batching_to(client, v1_answer) as (server, batcher):
        pending = [batcher.submit(context(path), V1Request(array)) for array in rows]
        columns = [
            batcher.submit(context(path), decode_v1_request(orjson.dumps({"instances": instances})))
            for instances in ([{"a": 1, "b": 2}], [{"a": 3, "b": 4}, {"a": 5, "b": 6}])
        ]
        answers = [await handle for handle in pending]
        column_answers = [await handle for handle in columns]
    assert len(server.bodies) == 2, "arrays and named columns are different batches"
    for array, answer in zip(rows, answers, strict=True):
        assert orjson.loads(answer.body) == {"predictions": array.sum(axis=1).tolist()}
        assert answer.batch_members == 3 and answer.batch_rows == 6
    assert [orjson.loads(answer.body) for answer in column_answers] == [
        {"predictions": [{"total": 3}]},
        {"predictions": [{"total": 7}, {"total": 11}]},
    ]


async def test_a_v1_answer_without_one_prediction_per_example_is_a_bad_gateway(
    client: aiohttp.ClientSession,
) -> None:
    async with batching_to(client, lambda body: (200, {"predictions": [1.0]})) as (_, batcher):
        pending = [batcher.submit(context("/v1/models/m:predict"), V1Request(np.ones((2, 3)))) for _ in "ab"]
        for handle in pending:
            with pytest.raises(BadGateway, match="batch of 4 examples with 1 predictions"):
                await handle


async def test_metrics_describe_the_batches(client: aiohttp.ClientSession) -> None:
    registry = CollectorRegistry()
    labels = {"model": "m", "cluster": CLUSTER}
    async with (
        batching_to(client, oip_answer, BatchingMetrics(registry)) as (server, batcher),
        # A second batcher on the same registry (another route) shares the metric families.
        Batcher(
            config(), {CLUSTER: BatchUpstream(http_send(client, server.url))}, BatchingMetrics(registry)
        ) as other,
    ):
        pending = [batcher.submit(context(), request(rows)) for rows in (1, 2, 3)]
        depth = registry.get_sample_value("turnout_batch_queue_depth", {**labels, "priority": "1"})
        assert depth == 3
        await other.submit(context(), request(1))
        answers = [await handle for handle in pending]
    assert {answer.batch_id for answer in answers} == {1}
    assert registry.get_sample_value("turnout_batch_size_count", labels) == 2
    assert registry.get_sample_value("turnout_batch_size_sum", labels) == 7
    assert registry.get_sample_value("turnout_batch_members_sum", labels) == 4
    assert registry.get_sample_value("turnout_batch_queue_delay_seconds_count", labels) == 4
    assert registry.get_sample_value("turnout_batch_upstream_seconds_count", labels) == 2
    assert registry.get_sample_value("turnout_batch_queue_depth", {**labels, "priority": "1"}) == 0

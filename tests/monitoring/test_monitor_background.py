"""The monitor's hand-over to its background task (a bounded list and one wake-up) and the batched
decoder's cheaper checks: what each must still refuse or do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Response
from gateway.core.json_bounds import MAX_DEPTH
from plugins.monitor import FACTORY, MonitorConfig, MonitorFilter, model_report
from plugins.monitor.fast_decode import decode_batch
from tests.monitoring._exchanges import binary_probabilities, oip_request, oip_response

WIDTH = 3
# How long a test waits for the background task to count what it was given; it takes milliseconds.
SETTLE_TIMEOUT_S = 10.0


def _filter(tmp_path: Path) -> tuple[MonitorFilter, CollectorRegistry]:
    np.save(tmp_path / "reference.npy", np.random.default_rng(1).normal(size=(500, WIDTH)))
    registry = CollectorRegistry(auto_describe=True)
    config = MonitorConfig.model_validate(
        {"models": {"risk": {"reference": "reference.npy"}}, "sample_rate": 1.0, "flush_interval": 0}
    )
    filter_ = FACTORY(config, BuildContext("r", "c", registry, None, str(tmp_path)))
    assert isinstance(filter_, MonitorFilter)
    return filter_, registry


def _answer(filter_: MonitorFilter, rows: int) -> None:
    rng = np.random.default_rng(rows)
    ctx = RequestContext(
        "POST",
        "/v2/models/risk/infer",
        "",
        {},
        "127.0.0.1",
        0.0,
        model="risk",
        body=oip_request(rng.normal(size=(rows, WIDTH))),
    )
    answer = oip_response(binary_probabilities(rng, rows))
    filter_.on_sampled_answer(ctx, Response(200, [("content-type", "application/json")], answer))


def _queued(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("turnout_monitor_samples_total", {"route": "r", "result": "queued"})


async def _rows_counted(filter_: MonitorFilter, rows: int) -> None:
    async def counted() -> None:
        while True:
            report = model_report([filter_], "risk")
            if report is not None and report["rows"] >= rows:
                return
            await asyncio.sleep(0.001)

    await asyncio.wait_for(counted(), SETTLE_TIMEOUT_S)


async def test_the_background_task_wakes_for_each_sample_after_it_has_gone_idle(tmp_path: Path) -> None:
    filter_, registry = _filter(tmp_path)
    await filter_.start()
    try:
        expected = 0
        for rows in (1, 2, 3):  # each after the task has drained the one before and waits again
            _answer(filter_, rows)
            expected += rows
            await _rows_counted(filter_, expected)
        report = model_report([filter_], "risk")
        assert report is not None and report["rows"] == 6
        assert _queued(registry) == 3
    finally:
        await filter_.stop()


async def test_a_stopped_filter_takes_no_samples_and_a_restarted_one_does(tmp_path: Path) -> None:
    filter_, registry = _filter(tmp_path)
    _answer(filter_, 1)  # not started: nowhere to put it
    await filter_.start()
    await filter_.stop()
    _answer(filter_, 1)
    assert not _queued(registry)
    await filter_.start()
    try:
        _answer(filter_, 4)
        await _rows_counted(filter_, 4)
    finally:
        await filter_.stop()


def _tensor(**changes: Any) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]}
    tensor.update(changes)
    return {key: value for key, value in tensor.items() if value is not None}


@pytest.mark.parametrize(
    "request_body",
    [
        orjson.dumps({"inputs": [_tensor(data=None, parameters={})]}),  # four keys, but not the four
        orjson.dumps({"inputs": [_tensor(shape=[True, 2])]}),  # a bool is no dimension
        orjson.dumps({"inputs": [_tensor(shape=[1.0, 2])]}),
        orjson.dumps({"inputs": [_tensor(), _tensor()]}),  # two inputs of one name
        # Small, yet nested deeper than the bound: json_bounds refuses it, the general decoder says so.
        b'{"inputs": [], "deep": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}",
    ],
)
def test_a_body_the_cheaper_checks_cannot_vouch_for_goes_the_general_way(request_body: bytes) -> None:
    rng = np.random.default_rng(5)
    plain = (oip_request(rng.normal(size=(1, 2))), oip_response(binary_probabilities(rng, 1)))
    groups, left = decode_batch([plain, (request_body, plain[1])])
    assert left == [1]
    assert [indexes for indexes, _ in groups] == [[0]]


def _body(data: bytes) -> bytes:
    """One body's bytes with another data array's text: what a template cuts around."""
    return b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [' + data + b"]}]}"


@pytest.mark.parametrize(
    "odd",
    [b"0.5", b"0.5, 1.5, 2.5", b'"a", "b"', b"0.5, [1.5]", b"NaN, 1", b"0.5,, 1", b"true, 1e39"],
)
def test_a_body_cut_by_a_template_is_taken_only_when_its_array_is_what_the_shape_says(odd: bytes) -> None:
    rng = np.random.default_rng(6)
    answer = oip_response(binary_probabilities(rng, 1))
    exchanges = [(_body(b"0.25, 0.75"), answer), (_body(odd), answer), (_body(b"1, 2"), answer)]
    groups, left = decode_batch(exchanges)
    assert 1 in left and all(1 not in indexes for indexes, _ in groups)
    for indexes, observation in groups:  # what was taken is what the bodies said
        assert observation.rows is not None
        expected = [[0.25, 0.75], None, [1.0, 2.0]]
        assert observation.rows.tolist() == [expected[index] for index in indexes]


def test_bodies_that_repeat_a_template_decode_as_if_each_were_read_whole() -> None:
    rng = np.random.default_rng(8)
    answer = oip_response(binary_probabilities(rng, 1))
    values = rng.normal(size=(20, 2)).astype(np.float32)
    exchanges = [(_body(b", ".join(b"%r" % float(v) for v in row)), answer) for row in values]
    groups, left = decode_batch(exchanges)
    assert left == [] and [indexes for indexes, _ in groups] == [list(range(20))]
    rows = groups[0][1].rows
    assert rows is not None and np.array_equal(rows, values.astype(np.float64))

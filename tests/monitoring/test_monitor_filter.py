"""The monitor filter's phases called directly: sampling, the bounded queue, decoding of each
protocol, data-quality rates, and bad input (wrong widths, unreadable bodies, bad references), none
of which may raise into the data path."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Response
from gateway.core.protocols import oip_v2
from plugins.monitor import FACTORY, MonitorConfig, MonitorFilter, model_report
from tests.monitoring._exchanges import binary_probabilities, oip_request, oip_response

WIDTH = 4
_DRAW = random.Random(11).random


def _reference(tmp_path: Path, rows: int = 1000) -> np.ndarray:
    data = np.random.default_rng(7).normal(size=(rows, WIDTH))
    np.save(tmp_path / "reference.npy", data)
    return data


def _build(tmp_path: Path, **options: Any) -> tuple[MonitorFilter, CollectorRegistry]:
    registry = CollectorRegistry(auto_describe=True)
    settings: dict[str, Any] = {
        "models": {"risk": {"reference": "reference.npy"}},
        "sample_rate": 1.0,
        "flush_interval": 0,
    }
    settings.update(options)
    filter_ = FACTORY(
        MonitorConfig.model_validate(settings), BuildContext("r", "c", registry, None, str(tmp_path))
    )
    assert isinstance(filter_, MonitorFilter)
    return filter_, registry


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[tuple[MonitorFilter, CollectorRegistry]]:
    _reference(tmp_path)
    filter_, registry = _build(tmp_path, min_samples=50)
    await filter_.start()
    yield filter_, registry
    await filter_.stop()


def _answer(
    filter_: MonitorFilter,
    request: bytes,
    response: bytes,
    *,
    model: str = "risk",
    status: int = 200,
    arm: str | None = None,
) -> None:
    ctx = RequestContext(
        "POST", f"/v2/models/{model}/infer", "", {}, "127.0.0.1", 0.0, model=model, body=request, arm=arm
    )
    _exchange(filter_, ctx, Response(status, [("content-type", "application/json")], response))


def _exchange(filter_: MonitorFilter, ctx: RequestContext, response: Response) -> None:
    """What the data path does: one draw per request, and a drawn answer to the filter."""
    if _DRAW() < filter_.answer_sample_rate:
        filter_.on_sampled_answer(ctx, response)


async def _settle(filter_: MonitorFilter) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


def _sampled(registry: CollectorRegistry, result: str) -> float:
    value = registry.get_sample_value("turnout_monitor_samples_total", {"route": "r", "result": result})
    return value or 0.0


async def test_rows_are_sketched_per_version_and_arm_and_drift_is_found_in_the_shifted_feature(
    monitor: tuple[MonitorFilter, CollectorRegistry],
) -> None:
    filter_, registry = monitor
    rng = np.random.default_rng(1)
    for _ in range(100):
        rows = rng.normal(size=(5, WIDTH))
        rows[:, 2] += 1.0  # one standard deviation
        _answer(filter_, oip_request(rows), oip_response(binary_probabilities(rng, 5)), arm="control")
    await _settle(filter_)
    report = model_report([filter_], "risk")
    assert report is not None
    assert report["rows"] == 500
    states = [feature["state"] for feature in report["features"]]
    assert states[2] == "alert" and states.count("ok") == WIDTH - 1, report["features"]
    assert [(one["version"], one["arm"]) for one in report["series"]] == [("1", "control")]
    probabilities = report["outputs"]["probabilities"]
    assert probabilities["kind"] == "probabilities" and 0.5 <= probabilities["confidence_mean"] <= 1.0
    assert report["outputs"]["label"]["kind"] == "labels"
    labels = {"model": "risk", "version": "1", "arm": "control", "feature": "2"}
    assert registry.get_sample_value("turnout_drift_state", labels) == 2.0
    assert (registry.get_sample_value("turnout_drift_psi", {**labels, "feature": "0"}) or 1.0) < 0.1
    confidence = registry.get_sample_value(
        "turnout_prediction_confidence_count",
        {"model": "risk", "version": "1", "arm": "control", "output": "probabilities"},
    )
    assert confidence == 500
    assert _sampled(registry, "queued") == 100


async def test_sampling_rate_and_statuses_decide_what_is_queued(tmp_path: Path) -> None:
    _reference(tmp_path)
    filter_, registry = _build(tmp_path, sample_rate=0.1)
    await filter_.start()
    try:
        rng = np.random.default_rng(2)
        request, response = (
            oip_request(rng.normal(size=(1, WIDTH))),
            oip_response(binary_probabilities(rng, 1)),
        )
        for _ in range(2000):
            _answer(filter_, request, response)
        _answer(filter_, request, response, status=500)
        _answer(filter_, request, response, model="other")
        queued = _sampled(registry, "queued")
        # Binomial(2000, 0.1): mean 200, sd 13.4; 5 sd either side.
        assert 133 <= queued <= 267
    finally:
        await filter_.stop()


async def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    _reference(tmp_path)
    filter_, registry = _build(tmp_path, queue_size=3)
    await filter_.start()
    try:
        rng = np.random.default_rng(3)
        request, response = (
            oip_request(rng.normal(size=(1, WIDTH))),
            oip_response(binary_probabilities(rng, 1)),
        )
        for _ in range(10):  # no await between them: the background task cannot drain
            _answer(filter_, request, response)
        assert (_sampled(registry, "queued"), _sampled(registry, "dropped")) == (3, 7)
        await _settle(filter_)
        report = model_report([filter_], "risk")
        assert report is not None and report["rows"] == 3
    finally:
        await filter_.stop()


async def test_nan_inf_and_range_violations_are_rates_not_errors(
    monitor: tuple[MonitorFilter, CollectorRegistry],
) -> None:
    filter_, registry = monitor
    rows = np.random.default_rng(4).normal(size=(10, WIDTH))
    rows[:5, 0] = np.nan
    rows[:2, 1] = np.inf
    rows[0, 3] = 1e9  # far outside the reference's range
    # JSON cannot carry NaN or infinity; the binary tensor extension can.
    encoded = oip_v2.encode_request(
        oip_v2.InferRequest([oip_v2.Tensor("features", "FP64", rows)]), binary_inputs=True
    )
    ctx = RequestContext(
        "POST",
        "/v2/models/risk/infer",
        "",
        {"inference-header-content-length": str(encoded.header_length)},
        "127.0.0.1",
        0.0,
        model="risk",
        body=encoded.body,
    )
    probabilities = binary_probabilities(np.random.default_rng(5), 10)
    _exchange(filter_, ctx, Response(200, [], oip_response(probabilities)))
    await _settle(filter_)
    report = model_report([filter_], "risk")
    assert report is not None and report["errors"] == []
    features = report["features"]
    assert features[0]["nan_rate"] == 0.5 and features[1]["inf_rate"] == 0.2
    assert features[3]["range_violation_rate"] == 0.1
    assert features[0]["samples"] == 5  # a NaN is not binned
    nan = registry.get_sample_value(
        "turnout_feature_nan_ratio", {"model": "risk", "version": "1", "arm": "", "feature": "0"}
    )
    assert nan == 0.5


async def test_rows_of_the_wrong_width_are_rejected_with_the_reason(
    monitor: tuple[MonitorFilter, CollectorRegistry],
) -> None:
    filter_, registry = monitor
    rng = np.random.default_rng(6)
    _answer(filter_, oip_request(rng.normal(size=(2, WIDTH + 1))), oip_response(binary_probabilities(rng, 2)))
    _answer(filter_, b"{not json", b"{}")
    _answer(filter_, oip_request(rng.normal(size=(2, WIDTH))), b'{"model_name": "risk"}')
    await _settle(filter_)
    assert _sampled(registry, "rejected") == 3
    report = model_report([filter_], "risk")
    assert report is not None and report["rows"] == 0
    # The last reason is kept: of one step, unreadable bodies are found first, then rows that do not fit.
    assert report["errors"] == [
        "sample not counted: model 'risk': requests carry 5 features, the reference has 4"
    ]
    # The filter still works after bad samples.
    _answer(filter_, oip_request(rng.normal(size=(2, WIDTH))), oip_response(binary_probabilities(rng, 2)))
    await _settle(filter_)
    report = model_report([filter_], "risk")
    assert report is not None and report["rows"] == 2


async def test_the_last_rejection_reason_names_the_width(
    monitor: tuple[MonitorFilter, CollectorRegistry],
) -> None:
    filter_, _ = monitor
    rng = np.random.default_rng(6)
    _answer(filter_, oip_request(rng.normal(size=(2, WIDTH + 1))), oip_response(binary_probabilities(rng, 2)))
    await _settle(filter_)
    report = model_report([filter_], "risk")
    assert report is not None
    assert report["errors"] == [
        "sample not counted: model 'risk': requests carry 5 features, the reference has 4"
    ]


async def test_a_reference_with_the_wrong_columns_is_reported_and_traffic_still_monitored(
    tmp_path: Path,
) -> None:
    (tmp_path / "reference.csv").write_text("a,b,x\n1,2,3\n4,5,6\n7,8,9\n")
    filter_, _ = _build(
        tmp_path, models={"risk": {"reference": "reference.csv", "features": ["a", "b", "c"]}}
    )
    await filter_.start()
    try:
        report = model_report([filter_], "risk")
        assert report is not None and report["reference"] is None
        (error,) = report["errors"]
        assert (
            "reference.csv: its columns are not the configured features (missing ['c'], unexpected ['x'])"
            in error
        )
        rng = np.random.default_rng(8)
        _answer(filter_, oip_request(rng.normal(size=(3, 3))), oip_response(binary_probabilities(rng, 3)))
        await _settle(filter_)
        report = model_report([filter_], "risk")
        assert report is not None and report["rows"] == 3
        assert [feature["name"] for feature in report["features"]] == ["a", "b", "c"]
        assert {feature["psi"] for feature in report["features"]} == {None}
    finally:
        await filter_.stop()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.npy", None, "cannot read the reference"),
        ("rows.txt", "1,2", "unknown reference format '.txt'"),
        ("words.csv", "a,b\n1,x\n", "every value after the header must be a number"),
        ("one.npy", np.zeros((1, 3)), "needs a 2-D array of at least 2 rows"),
    ],
)
async def test_unusable_references_are_clear_errors(
    tmp_path: Path, name: str, content: Any, message: str
) -> None:
    if isinstance(content, str):
        (tmp_path / name).write_text(content)
    elif content is not None:
        np.save(tmp_path / name, content)
    filter_, _ = _build(tmp_path, models={"risk": {"reference": name}})
    await filter_.start()
    try:
        report = model_report([filter_], "risk")
        assert report is not None
        assert message in report["errors"][0], report["errors"]
    finally:
        await filter_.stop()


async def test_kserve_v1_named_columns_and_regression_values(tmp_path: Path) -> None:
    (tmp_path / "reference.csv").write_text("age,bmi\n" + "\n".join(f"{i},{i % 7}" for i in range(100)))
    filter_, _ = _build(tmp_path, models={"diabetes": {"reference": "reference.csv"}})
    await filter_.start()
    try:
        request = orjson.dumps({"instances": [{"bmi": 3, "age": 40}, {"bmi": 5, "age": 60}]})
        _answer(filter_, request, orjson.dumps({"predictions": [150.0, 170.0]}), model="diabetes")
        await _settle(filter_)
        report = model_report([filter_], "diabetes")
        assert report is not None and report["errors"] == []
        assert [feature["name"] for feature in report["features"]] == ["age", "bmi"]
        values = report["outputs"]["predictions"]
        assert values["kind"] == "values" and values["mean"] == 160.0 and values["std"] == 10.0
    finally:
        await filter_.stop()


async def test_openai_token_lengths_and_finish_reasons(tmp_path: Path) -> None:
    filter_, registry = _build(tmp_path, models={"chat": {}})
    await filter_.start()
    try:
        request = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        for completion, reason in ((10, "stop"), (30, "length"), (20, "stop")):
            response = orjson.dumps(
                {
                    "choices": [{"index": 0, "message": {"content": "..."}, "finish_reason": reason}],
                    "usage": {
                        "prompt_tokens": 5,
                        "completion_tokens": completion,
                        "total_tokens": 5 + completion,
                    },
                }
            )
            _answer(filter_, request, response, model="chat")
        await _settle(filter_)
        report = model_report([filter_], "chat")
        assert report is not None and report["errors"] == []
        llm = report["outputs"]["llm"]
        assert llm["finish_reasons"] == {"length": 1, "stop": 2}
        assert (llm["prompt_tokens_mean"], llm["completion_tokens_mean"]) == (5.0, 20.0)
        labels = {"model": "chat", "version": "", "arm": "", "reason": "stop"}
        assert registry.get_sample_value("turnout_llm_finish_reasons_total", labels) == 2
    finally:
        await filter_.stop()


def test_config_refuses_bad_options() -> None:
    with pytest.raises(ValidationError, match="psi_alert must be at least psi_warn"):
        MonitorConfig.model_validate({"models": {"m": {}}, "psi_warn": 0.3, "psi_alert": 0.2})
    with pytest.raises(ValidationError, match="sample_rate"):
        MonitorConfig.model_validate({"models": {"m": {}}, "sample_rate": 0})
    with pytest.raises(ValidationError, match="models"):
        MonitorConfig.model_validate({"models": {}})


async def test_two_filters_on_one_registry_export_one_family(tmp_path: Path) -> None:
    _reference(tmp_path)
    first, registry = _build(tmp_path)
    settings = MonitorConfig.model_validate(
        {"models": {"risk": {"reference": "reference.npy"}}, "sample_rate": 1.0, "flush_interval": 0}
    )
    second = FACTORY(settings, BuildContext("r2", "c", registry, None, str(tmp_path)))
    assert isinstance(second, MonitorFilter)
    await first.start()
    await second.start()
    try:
        rng = np.random.default_rng(9)
        for filter_ in (first, second):
            _answer(
                filter_, oip_request(rng.normal(size=(2, WIDTH))), oip_response(binary_probabilities(rng, 2))
            )
        await _settle(first)
        labels = {"model": "risk", "version": "1", "arm": ""}
        assert registry.get_sample_value("turnout_monitor_rows_total", labels) == 4  # one series, summed
    finally:
        await second.stop()
        await first.stop()
    assert (
        registry.get_sample_value("turnout_monitor_rows_total", {"model": "risk", "version": "1", "arm": ""})
        is None
    )


async def test_one_step_with_rows_of_two_widths_counts_the_good_ones(
    monitor: tuple[MonitorFilter, CollectorRegistry],
) -> None:
    filter_, registry = monitor
    rng = np.random.default_rng(10)
    for width in (WIDTH, WIDTH + 1, WIDTH):  # queued together: one step of the background task
        _answer(filter_, oip_request(rng.normal(size=(2, width))), oip_response(binary_probabilities(rng, 2)))
    await _settle(filter_)
    report = model_report([filter_], "risk")
    assert report is not None and report["rows"] == 4
    assert report["outputs"]["probabilities"]["rows"] == 4
    assert _sampled(registry, "rejected") == 1


def test_a_step_larger_than_a_window_keeps_only_the_last_windows(tmp_path: Path) -> None:
    from plugins.monitor.decode import Observation
    from plugins.monitor.reference import from_rows
    from plugins.monitor.series import ModelSeries, Thresholds

    reference = from_rows(np.random.default_rng(1).normal(size=(500, 1)), None, 10, "simulated")
    series = ModelSeries("m", "1", "", reference, Thresholds(0.1, 0.25, 10, window=100))
    old, new = np.full((250, 1), -5.0), np.full((230, 1), 5.0)
    series.observe(Observation(rows=np.vstack([old, new])))  # one step: 480 rows, windows of 100
    counts = series.window_counts()[0]
    # The last two windows: rows 400-479 (80, current) and 300-399 (100, previous), all new rows.
    assert counts.sum() == 180 and counts[-1] == 180


async def test_the_control_arm_is_the_reference_of_the_other_arms(tmp_path: Path) -> None:
    filter_, _ = _build(
        tmp_path,
        models={"risk": {"reference_arm": "control"}},
        window=400,
        min_samples=200,
    )
    await filter_.start()
    try:
        rng = np.random.default_rng(13)
        for arm, shift in (("treatment", 1.0), ("control", 0.0), ("treatment", 1.0), ("control", 0.0)):
            for _ in range(25):
                rows = rng.normal(size=(10, WIDTH))
                rows[:, 1] += shift  # the treatment's inputs differ in feature 1
                _answer(filter_, oip_request(rows), oip_response(binary_probabilities(rng, 10)), arm=arm)
            await _settle(filter_)
        report = model_report([filter_], "risk")
        assert report is not None and report["errors"] == []
        assert report["reference"] == {
            "source": "400 rows of arm 'control' from live traffic",
            "rows": 400,
            "features": 4,
        }
        by_arm = {one["arm"]: one for one in report["series"]}
        treatment = by_arm["treatment"]["features"]
        assert {feature["against"] for feature in treatment} == {"arm control"}
        assert [feature["state"] for feature in treatment] == ["ok", "alert", "ok", "ok"]
        # Rows the treatment sent before the reference existed were kept and binned once it was.
        assert treatment[0]["samples"] == 500
        control = by_arm["control"]["features"]
        assert {feature["against"] for feature in control} == {"reference"}
        assert {feature["state"] for feature in control} == {"ok"}
    finally:
        await filter_.stop()

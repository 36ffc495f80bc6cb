"""The batcher end to end against a real inference worker process on loopback.

One worker serves the demo models (built once per session); each test gives a batcher a `send`
that POSTs to it with aiohttp, sometimes wrapped to record the batches or to hold them back, which
is how a test keeps the cluster busy so that requests stay queued.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, ServiceUnavailable, TooManyRequests
from gateway.core.protocols.binary import HEADER_LENGTH
from gateway.core.protocols.oip_v2 import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    decode_request,
    decode_response,
    encode_request,
)
from plugins.batching import BatchAnswer, Batcher, BatchingConfig, BatchUpstream, SendBatch, UpstreamReply
from plugins.batching.payload import EncodedBatch
from tests.support.processes import ROOT, free_port, http_ok, wait_until

# A worker imports numpy, onnxruntime and scikit-learn before it listens; a minute covers a cold
# start on a 2-core machine busy with other tests.
WORKER_START_S = 60.0
RISK = "/v2/models/risk/versions/{}/infer"
CLUSTER = "workers"


@pytest.fixture(scope="session")
def risk_worker(demo_models: Path) -> Iterator[str]:
    """The URL of one worker serving the demo models (risk v1, v2; diabetes v1)."""
    repository = demo_models
    port = free_port()
    log_path = repository.parent / f"batching-worker-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "inference_workers",
        "worker",
        "--model-repository",
        str(repository),
        "--http-port",
        str(port),
        "--device",
        "cpu",
        "--exit-with-parent",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or http_ok(f"{url}/v2/health/ready"),
            WORKER_START_S,
            message="the inference worker",
        )
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{log_path.read_text(errors='replace')}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class Worker:
    """Sends to the worker: batched (`send`, given to the batcher) or one request alone (`direct`)."""

    url: str
    session: aiohttp.ClientSession
    batches: list[InferRequest] = field(default_factory=list)
    """Every batch the batcher sent, decoded."""
    content_types: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    """While set to an unset event, batches wait for it before leaving (the cluster is 'busy')."""

    async def send(
        self, path: str, body: bytes, content_type: str, headers: Mapping[str, str]
    ) -> UpstreamReply:
        self.batches.append(decode_request(body, headers.get(HEADER_LENGTH)))
        self.content_types.append(content_type)
        if self.gate is not None:
            await self.gate.wait()
        return await self.direct(path, body, content_type, headers)

    async def direct(
        self, path: str, body: bytes, content_type: str = "application/json", headers: Mapping[str, str] = {}
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.session.post(
            self.url + path, data=body, headers={"Content-Type": content_type, **headers}
        ) as response:
            return response.status, dict(response.headers), await response.read()


@pytest.fixture
def worker(risk_worker: str, client: aiohttp.ClientSession) -> Worker:
    return Worker(risk_worker, client)


def batcher(send: SendBatch, **options: object) -> Batcher:
    config = BatchingConfig.model_validate({"max_batch_size": 16, "max_queue_delay": "5ms", **options})
    return Batcher(config, {CLUSTER: BatchUpstream(send)})


def context(version: int = 1, headers: dict[str, str] | None = None) -> RequestContext:
    return RequestContext(
        "POST",
        RISK.format(version),
        "",
        headers or {},
        "127.0.0.1",
        time.monotonic(),
        cluster=CLUSTER,
        model="risk",
        model_version=str(version),
    )


def risk_request(
    rng: np.random.Generator,
    rows: int,
    outputs: list[RequestedOutput] | None = None,
    binary_output: bool = False,
) -> InferRequest:
    features = rng.normal(0.0, 1.0, size=(rows, 30)).astype(np.float32)
    return InferRequest([Tensor("features", "FP32", features)], outputs or [], binary_output=binary_output)


def answer_of(answer: BatchAnswer) -> InferResponse:
    headers = dict(answer.headers)
    return decode_response(answer.body, headers.get(HEADER_LENGTH.lower()))


def assert_same_outputs(batched: InferResponse, alone: InferResponse) -> None:
    assert [output.name for output in batched.outputs] == [output.name for output in alone.outputs]
    for mine, theirs in zip(batched.outputs, alone.outputs, strict=True):
        assert mine.datatype == theirs.datatype
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine.data, theirs.data, rtol=0, atol=1e-5)


async def test_batched_answers_equal_unbatched_answers(worker: Worker) -> None:
    rng = np.random.default_rng(7)
    limit = asyncio.Semaphore(64)  # 64 callers at a time, as from 64 client connections
    answers: list[BatchAnswer] = []

    async def one(index: int) -> None:
        version = 1 + index % 2
        binary_in, binary_out = bool(rng.integers(2)), bool(rng.integers(2))
        request = risk_request(rng, int(rng.integers(1, 4)), binary_output=binary_out)
        encoded = encode_request(request, binary_inputs=binary_in)
        headers = {} if encoded.header_length is None else {HEADER_LENGTH: str(encoded.header_length)}
        async with limit:
            parsed = decode_request(encoded.body, headers.get(HEADER_LENGTH))
            # With its body as sent: a member left alone in its batch goes out as is.
            original = EncodedBatch(encoded.body, encoded.content_type, headers)
            answer = await engine.submit(context(version), parsed, original)
            status, alone_headers, alone_body = await worker.direct(
                RISK.format(version), encoded.body, encoded.content_type, headers
            )
        assert answer.status == status == 200
        assert answer.rows == parsed.inputs[0].shape[0]
        alone = decode_response(alone_body, alone_headers.get(HEADER_LENGTH))
        assert_same_outputs(answer_of(answer), alone)
        labels = {output.name: output.data for output in answer_of(answer).outputs}["label"]
        assert np.array_equal(labels, {output.name: output.data for output in alone.outputs}["label"])
        answers.append(answer)

    async with batcher(worker.send) as engine:
        await asyncio.gather(*(one(index) for index in range(1000)))
    batch_ids = {answer.batch_id for answer in answers}
    assert len(worker.batches) == len(batch_ids)
    assert len(batch_ids) < 500, "under concurrency, requests should share batches"
    assert max(answer.batch_members for answer in answers) > 2
    assert all(batch.inputs[0].shape[0] <= 16 for batch in worker.batches)
    assert sum(batch.inputs[0].shape[0] for batch in worker.batches) == sum(a.rows for a in answers)


async def test_binary_tensor_extension_round_trips(worker: Worker) -> None:
    rng = np.random.default_rng(3)
    as_json = risk_request(rng, 2)
    as_binary = risk_request(rng, 3, binary_output=True)
    mixed = risk_request(rng, 1, [RequestedOutput("probabilities", binary=True), RequestedOutput("label")])
    members = (as_json, as_binary, mixed)
    async with batcher(worker.send, upstream_binary_tensors=True) as engine:
        pending = [engine.submit(context(), request) for request in members]
        answers = await asyncio.gather(*pending)
    assert worker.content_types == ["application/octet-stream"] * 2, "sent in binary"
    # JSON and binary answers share a batch; naming outputs is a different request, so another batch.
    assert answers[0].batch_id == answers[1].batch_id != answers[2].batch_id
    json_headers, binary_headers, partial_headers = (dict(answer.headers) for answer in answers)
    assert json_headers["content-type"] == "application/json"
    assert HEADER_LENGTH.lower() not in json_headers
    assert binary_headers["content-type"] == "application/octet-stream"
    assert partial_headers["content-type"] == "application/octet-stream"
    for request, answer in zip(members, answers, strict=True):
        encoded = encode_request(request)
        _, alone_headers, alone_body = await worker.direct(RISK.format(1), encoded.body)
        assert_same_outputs(answer_of(answer), decode_response(alone_body, alone_headers.get(HEADER_LENGTH)))
    # A binary output and a JSON output in the same answer, as the member asked.
    document_length = int(partial_headers[HEADER_LENGTH.lower()])
    assert b'"data"' in answers[2].body[:document_length]
    assert len(answers[2].body) - document_length == 1 * 2 * 4  # one row of two FP32 probabilities


async def test_a_lone_request_goes_out_as_sent_and_its_answer_comes_back_as_given(worker: Worker) -> None:
    rng = np.random.default_rng(11)
    request = risk_request(rng, 2, binary_output=True)
    encoded = encode_request(request, binary_inputs=True)
    headers = {HEADER_LENGTH: str(encoded.header_length)}
    original = EncodedBatch(encoded.body, encoded.content_type, headers)
    # JSON batches upstream, yet a batch of one is sent exactly as its caller sent it.
    async with batcher(worker.send, upstream_binary_tensors=False) as engine:
        answer = await engine.submit(context(), request, original)
        pair = [engine.submit(context(), risk_request(rng, 1), original) for _ in range(2)]
        paired = await asyncio.gather(*pair)
    status, alone_headers, alone_body = await worker.direct(
        RISK.format(1), encoded.body, encoded.content_type, headers
    )
    assert answer.status == status == 200 and answer.batch_members == 1
    assert answer.body == alone_body, "the upstream's answer, byte for byte"
    assert dict(answer.headers) == {
        "content-type": alone_headers["Content-Type"],
        HEADER_LENGTH.lower(): alone_headers[HEADER_LENGTH],
    }
    assert worker.content_types == ["application/octet-stream", "application/json"]
    assert worker.batches[0].inputs[0].data.tobytes() == request.inputs[0].data.tobytes()
    # Two members are merged and split as usual, whatever bodies they came with.
    assert paired[0].batch_id == paired[1].batch_id and paired[0].batch_members == 2
    assert worker.batches[1].inputs[0].shape == (2, 30)


async def test_higher_priority_requests_overtake_a_full_queue(worker: Worker) -> None:
    rng = np.random.default_rng(5)
    async with batcher(worker.send, max_batch_size=2, priority_levels=2, max_queue_delay="100ms") as engine:
        low = engine.submit(context(headers={"x-turnout-priority": "2"}), risk_request(rng, 1))
        high = [engine.submit(context(), risk_request(rng, 1)) for _ in range(2)]
        assert (low.priority, high[0].priority) == (2, 1)
        low_answer, *high_answers = await asyncio.gather(low, *high)
    assert high_answers[0].batch_id == high_answers[1].batch_id
    assert high_answers[0].batch_members == 2
    assert low_answer.batch_id > high_answers[0].batch_id
    assert low_answer.queue_delay >= 0.09  # it waited for its own max_queue_delay, behind the full batch


@pytest.mark.parametrize(
    ("action", "error"), [("reject_429", TooManyRequests), ("reject_503", ServiceUnavailable)]
)
async def test_full_queue_refuses_at_once(worker: Worker, action: str, error: type[GatewayError]) -> None:
    rng = np.random.default_rng(11)
    async with batcher(
        worker.send, max_queue_size=2, max_queue_delay="50ms", queue_full_action=action
    ) as engine:
        queued = [engine.submit(context(), risk_request(rng, 1)) for _ in range(2)]
        with pytest.raises(error) as refused:
            engine.submit(context(), risk_request(rng, 1))
        answers = await asyncio.gather(*queued)
    assert refused.value.headers["Retry-After"] == "1"
    assert "batch queue of model 'risk' is full" in str(refused.value)
    assert [answer.status for answer in answers] == [200, 200]


async def test_queue_timeout_rejects_a_request_left_waiting(worker: Worker) -> None:
    rng = np.random.default_rng(13)
    worker.gate = asyncio.Event()
    options = {"max_batch_size": 1, "max_inflight_batches_per_endpoint": 1, "default_queue_timeout": "1s"}
    async with batcher(worker.send, **options) as engine:
        first = engine.submit(context(), risk_request(rng, 1))
        await_first = asyncio.ensure_future(first)
        await _until(lambda: len(worker.batches) == 1)
        short = engine.submit(context(headers={"x-turnout-queue-timeout": "30ms"}), risk_request(rng, 1))
        with pytest.raises(TooManyRequests, match=r"waited its queue timeout \(0.03s\)"):
            await short
        worker.gate.set()
        assert (await await_first).status == 200
    assert len(worker.batches) == 1, "the timed-out request never reached the upstream"


async def test_queue_timeout_delay_lets_it_wait_behind_the_others(worker: Worker) -> None:
    rng = np.random.default_rng(17)
    worker.gate = asyncio.Event()
    options = {"max_batch_size": 1, "max_inflight_batches_per_endpoint": 1, "timeout_action": "delay"}
    async with batcher(worker.send, **options) as engine:
        blocker = asyncio.ensure_future(engine.submit(context(), risk_request(rng, 1)))
        patient = engine.submit(context(headers={"x-turnout-queue-timeout": "20ms"}), risk_request(rng, 1))
        await _until(lambda: patient.timed_out)
        later = engine.submit(context(), risk_request(rng, 1))
        worker.gate.set()
        blocker_answer, patient_answer, later_answer = await asyncio.gather(blocker, patient, later)
    assert patient_answer.status == later_answer.status == 200
    assert blocker_answer.batch_id < later_answer.batch_id < patient_answer.batch_id


async def test_incompatible_requests_form_separate_batches(worker: Worker) -> None:
    rng = np.random.default_rng(19)
    narrow = InferRequest([Tensor("features", "FP32", np.zeros((2, 29), np.float32))])
    groups: dict[str, Callable[[], tuple[RequestContext, InferRequest]]] = {
        "all outputs": lambda: (context(), risk_request(rng, 2)),
        "label only": lambda: (context(), risk_request(rng, 1, outputs=[RequestedOutput("label")])),
        "29 features": lambda: (context(), narrow),
        "version 2": lambda: (context(2), risk_request(rng, 3)),
    }
    async with batcher(worker.send, max_batch_size=64, max_queue_delay="20ms") as engine:
        pending = {name: [engine.submit(*make()) for _ in range(3)] for name, make in groups.items()}
        answers = {name: await asyncio.gather(*handles) for name, handles in pending.items()}
    assert len(worker.batches) == 4
    batch_of = {name: {answer.batch_id for answer in group} for name, group in answers.items()}
    assert all(len(ids) == 1 for ids in batch_of.values()), batch_of
    assert len(set.union(*batch_of.values())) == 4
    assert [answer.status for answer in answers["29 features"]] == [400] * 3
    assert b"features" in answers["29 features"][0].body
    for name in ("all outputs", "label only", "version 2"):
        assert [answer.status for answer in answers[name]] == [200] * 3, name
    assert [output.name for output in answer_of(answers["label only"][0]).outputs] == ["label"]


async def test_cancelled_members_leave_the_queue(worker: Worker) -> None:
    rng = np.random.default_rng(23)
    requests = [risk_request(rng, rows) for rows in (1, 2, 3, 1)]
    async with batcher(worker.send, max_queue_delay="50ms") as engine:
        kept, withdrawn, disconnected, kept_too = (engine.submit(context(), r) for r in requests)
        waiting = asyncio.ensure_future(disconnected)
        await asyncio.sleep(0)  # the task starts awaiting the handle
        assert withdrawn.cancel()
        waiting.cancel()  # the client went away: the task awaiting the handle is cancelled
        await asyncio.sleep(0)  # future callbacks run on the next turn of the loop
        assert engine.queued == 2
        first, second = await asyncio.gather(kept, kept_too)
    assert waiting.cancelled() and disconnected.done()
    assert len(worker.batches) == 1
    assert worker.batches[0].inputs[0].shape == (2, 30)
    np.testing.assert_array_equal(
        worker.batches[0].inputs[0].data,
        np.concatenate([requests[0].inputs[0].data, requests[3].inputs[0].data]),
    )
    assert first.batch_members == second.batch_members == 2 and first.batch_rows == 2


async def test_a_lone_request_waits_max_queue_delay_and_no_longer(worker: Worker) -> None:
    rng = np.random.default_rng(29)
    async with batcher(worker.send, max_queue_delay="200ms") as engine:
        started = time.monotonic()
        answer = await engine.submit(context(), risk_request(rng, 1))
        elapsed = time.monotonic() - started
    # 100ms of slack for a loaded machine, still well short of waiting the delay twice.
    assert 0.2 <= answer.queue_delay < 0.3
    assert elapsed < 0.5
    assert answer.batch_members == 1


async def test_a_full_batch_goes_without_waiting(worker: Worker) -> None:
    rng = np.random.default_rng(31)
    async with batcher(worker.send, max_batch_size=4, max_queue_delay="800ms") as engine:
        answers = await asyncio.gather(*(engine.submit(context(), risk_request(rng, 2)) for _ in range(2)))
    assert max(answer.queue_delay for answer in answers) < 0.3
    assert answers[0].batch_rows == 4


async def test_a_busy_cluster_gathers_larger_batches(worker: Worker) -> None:
    rng = np.random.default_rng(37)
    worker.gate = asyncio.Event()
    options = {"max_batch_size": 8, "max_inflight_batches_per_endpoint": 1, "max_queue_delay": "0ms"}
    async with batcher(worker.send, **options) as engine:
        first = engine.submit(context(), risk_request(rng, 1))
        await _until(lambda: len(worker.batches) == 1)
        rest = [engine.submit(context(), risk_request(rng, 1)) for _ in range(20)]
        worker.gate.set()
        answers = await asyncio.gather(first, *rest)
    assert [batch.inputs[0].shape[0] for batch in worker.batches] == [1, 8, 8, 4]
    assert {answer.status for answer in answers} == {200}


async def test_stop_sends_what_is_queued_and_refuses_new_requests(worker: Worker) -> None:
    rng = np.random.default_rng(41)
    engine = batcher(worker.send, max_queue_delay="10s")
    queued = [engine.submit(context(), risk_request(rng, 1)) for _ in range(3)]
    started = time.monotonic()
    await engine.stop()
    assert time.monotonic() - started < 2, "stop sends at once instead of waiting out max_queue_delay"
    assert [(await pending).status for pending in queued] == [200, 200, 200]
    with pytest.raises(ServiceUnavailable):
        engine.submit(context(), risk_request(rng, 1))


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.002)

"""Throughput and latency of one inference worker, beside the model's own in-process speed.

    python bench/worker.py [--duration 5] [--concurrency 1,8,64] [--model-repository DIR] [--json]

Measures `risk` version 2 (the gradient-boosting demo model) with batch-1 requests:
  * in process: onnxruntime `session.run` at batch 1, and at batch 64 (rows/s: the ceiling batching
    could reach), with the session options the worker uses;
  * through a worker started for the run (REST, JSON bodies) at each concurrency: N keep-alive
    connections, each sending its next request as soon as the previous answer is complete.
The client is a small HTTP/1.1 protocol on httptools rather than a full client library, so that on a
small machine the figures say more about the worker than about the client; it still shares the CPU
with the worker, which the printed table notes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import httptools
import numpy as np
import onnxruntime as ort
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference_workers.examples.build_models import build  # noqa: E402

MODEL, VERSION = "risk", 2
# Time to let connections open and caches warm before measuring.
WARMUP_S = 1.0
# A worker loads three small models; a minute covers a cold start on a loaded machine.
START_TIMEOUT_S = 60.0


@dataclass
class Result:
    path: str
    concurrency: int
    batch: int
    inferences_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int = 0


def summarise(
    path: str, concurrency: int, batch: int, latencies: list[float], elapsed: float, errors: int = 0
) -> Result:
    values = np.asarray(latencies) * 1000
    p50, p99 = (float(np.percentile(values, q)) for q in (50, 99)) if len(values) else (float("nan"),) * 2
    return Result(
        path, concurrency, batch, len(latencies) * batch / elapsed, p50, p99, len(latencies), errors
    )


def in_process(model_path: Path, rows: np.ndarray, batch: int, duration: float) -> Result:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the worker's default, so the comparison is like for like
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    feeds = [{"features": rows[i : i + batch]} for i in range(0, len(rows) - batch + 1, batch)]
    warm_end = time.perf_counter() + WARMUP_S / 2
    while time.perf_counter() < warm_end:
        session.run(None, feeds[0])
    latencies: list[float] = []
    started = time.perf_counter()
    end = started + duration
    index = 0
    while time.perf_counter() < end:
        begin = time.perf_counter()
        session.run(None, feeds[index % len(feeds)])
        latencies.append(time.perf_counter() - begin)
        index += 1
    return summarise("in-process onnxruntime", 1, batch, latencies, time.perf_counter() - started)


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as an answer is complete."""

    def __init__(
        self,
        requests: list[bytes],
        state: dict[str, float],
        latencies: list[float],
        done: asyncio.Future[int],
    ) -> None:
        self._requests, self._state, self._latencies, self._done = requests, state, latencies, done
        self._parser = httptools.HttpResponseParser(self)
        self._sent = 0.0
        self._count = 0
        self._errors = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        if time.perf_counter() >= self._state["end"]:
            self._transport.close()
            return
        self._sent = time.perf_counter()
        self._transport.write(self._requests[self._count % len(self._requests)])
        self._count += 1

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        if self._parser.get_status_code() != 200:
            self._errors += 1
        elif self._sent >= self._state["start"]:
            self._latencies.append(now - self._sent)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(self._errors)


async def through_worker(port: int, bodies: list[bytes], concurrency: int, duration: float) -> Result:
    head = b"POST /v2/models/%s/versions/%d/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (MODEL.encode(), VERSION)
    requests = [
        head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in bodies
    ]
    loop = asyncio.get_running_loop()
    now = time.perf_counter()
    state = {"start": now + WARMUP_S, "end": now + WARMUP_S + duration}
    latencies: list[float] = []
    finished = []
    for offset in range(concurrency):
        done: asyncio.Future[int] = loop.create_future()
        rotated = requests[offset:] + requests[:offset]
        connection = functools.partial(_Connection, rotated, state, latencies, done)
        await loop.create_connection(connection, "127.0.0.1", port)
        finished.append(done)
    errors = sum(await asyncio.gather(*finished))
    return summarise("worker REST (JSON)", concurrency, 1, latencies, duration, errors)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(repository: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "inference_workers.worker",
        "--model-repository",
        str(repository),
        "--http-port",
        str(port),
        "--models",
        f"{MODEL}:{VERSION}",
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the worker did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per row of the table")
    parser.add_argument("--concurrency", default="1,8,64", help="connections to the worker, comma-separated")
    parser.add_argument("--model-repository", type=Path, default=None, help="default: build the demo models")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        repository = args.model_repository or Path(scratch) / "models"
        build(repository)
        from sklearn.datasets import load_breast_cancer

        rows = load_breast_cancer(return_X_y=True)[0].astype(np.float32)
        model_path = repository / MODEL / str(VERSION) / "model.onnx"
        results = [in_process(model_path, rows, batch, args.duration) for batch in (1, 64)]
        bodies = [
            orjson.dumps(
                {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": row}]},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            for row in rows[:64]
        ]
        port = free_port()
        worker = start_worker(repository, port)
        try:
            for concurrency in (int(part) for part in args.concurrency.split(",")):
                results.append(asyncio.run(through_worker(port, bodies, concurrency, args.duration)))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    if args.json:
        print(
            json.dumps(
                {
                    "model": f"{MODEL} v{VERSION}",
                    "cpus": os.cpu_count(),
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
        return 0
    print(f"{MODEL} v{VERSION}, {os.cpu_count()} CPUs; client and worker share them\n")
    print(f"{'path':26} {'conc':>5} {'batch':>5} {'inf/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for r in results:
        figures = f"{r.inferences_per_s:10.0f} {r.p50_ms:8.3f} {r.p99_ms:8.3f} {r.errors:6d}"
        print(f"{r.path:26} {r.concurrency:5d} {r.batch:5d} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

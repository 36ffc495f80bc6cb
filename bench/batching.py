"""Throughput and latency with dynamic batching off and on, side by side, through the batcher engine.

    python bench/batching.py [--duration 3] [--concurrency 1,16,64,256] [--max-batch-size 64]
                             [--max-queue-delay 2ms] [--model-repository DIR] [--json]

Measures `risk` version 2 (the gradient-boosting demo ONNX model) served by one worker started for
the run. At each concurrency N, N callers each send one-row requests back to back:
  * off: each request is POSTed alone to the worker (JSON), as a proxy without batching would;
  * on:  each request is parsed with the OIP v2 codec and submitted to a `Batcher`, whose `send`
         POSTs the merged batch (binary tensors) over the same kind of aiohttp session;
and, as the ceiling, onnxruntime runs the model in this process at batch = max_batch_size (rows/s,
what batching could reach if HTTP and JSON cost nothing). The callers, the batcher and the worker
share the machine's CPUs, which the printed table notes. The gateway-level variant (the same
through a running turnout) belongs to the gateway's own benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker import MODEL, VERSION, free_port, in_process, start_worker  # noqa: E402

from gateway.core.config_types import parse_duration  # noqa: E402
from gateway.core.context import RequestContext  # noqa: E402
from gateway.core.protocols.oip_v2 import decode_request  # noqa: E402
from inference_workers.examples.build_models import build  # noqa: E402
from plugins.batching import Batcher, BatchingConfig, BatchUpstream, UpstreamReply  # noqa: E402

PATH = f"/v2/models/{MODEL}/versions/{VERSION}/infer"
# Time for connections to open, the model's thread pool to warm and queues to reach steady state.
WARMUP_S = 1.0
# Distinct request bodies cycled by the callers: enough that no answer is served from a CPU cache line
# of the previous one, few enough to build instantly.
BODIES = 256

Call = Callable[[int], Awaitable[bool]]


@dataclass
class Row:
    mode: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    upstream_calls_per_s: float
    mean_batch_rows: float


def next_window(duration: float) -> tuple[float, float]:
    """The measured interval (perf_counter times) of a run starting now, after the warm-up."""
    start = time.perf_counter() + WARMUP_S
    return start, start + duration


async def measure(call: Call, concurrency: int, window: tuple[float, float]) -> tuple[list[float], int]:
    """Run `concurrency` callers back to back; latencies (s) of calls that ended in the window."""
    start, end = window
    latencies: list[float] = []
    errors = 0

    async def caller(offset: int) -> None:
        nonlocal errors
        index = offset
        while (began := time.perf_counter()) < end:
            ok = await call(index)
            finished = time.perf_counter()
            index += concurrency
            if start <= finished <= end:
                if ok:
                    latencies.append(finished - began)
                else:
                    errors += 1

    await asyncio.gather(*(caller(offset) for offset in range(concurrency)))
    return latencies, errors


def row(
    mode: str, concurrency: int, latencies: list[float], errors: int, duration: float, batches: list[int]
) -> Row:
    values = np.asarray(latencies) * 1000
    p50, p99 = (float(np.percentile(values, q)) for q in (50, 99)) if len(values) else (float("nan"),) * 2
    calls = len(batches) if batches else len(latencies)
    mean_rows = float(np.mean(batches)) if batches else 1.0
    return Row(
        mode,
        concurrency,
        len(latencies) / duration,
        p50,
        p99,
        len(latencies),
        errors,
        calls / duration,
        mean_rows,
    )


async def run_pair(
    url: str, bodies: list[bytes], concurrency: int, duration: float, config: BatchingConfig
) -> list[Row]:
    connector = aiohttp.TCPConnector(limit=0)  # one connection per caller, as N clients would have
    async with aiohttp.ClientSession(connector=connector) as session:

        async def alone(index: int) -> bool:
            body = bodies[index % len(bodies)]
            async with session.post(url + PATH, data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                return r.status == 200

        latencies, errors = await measure(alone, concurrency, next_window(duration))
        off = row("off", concurrency, latencies, errors, duration, [])

        async def send(
            path: str, body: bytes, content_type: str, headers: Mapping[str, str]
        ) -> UpstreamReply:
            async with session.post(
                url + path, data=body, headers={"Content-Type": content_type, **headers}
            ) as r:
                return r.status, dict(r.headers), await r.read()

        batcher = Batcher(config, {"worker": BatchUpstream(send)})
        batch_rows: dict[int, int] = {}  # batch id -> rows, for batches answered in the measured window
        window = next_window(duration)

        async def batched(index: int) -> bool:
            ctx = RequestContext(
                "POST", PATH, "", {}, "127.0.0.1", time.monotonic(), cluster="worker", model=MODEL,
                model_version=str(VERSION),
            )  # fmt: skip
            answer = await batcher.submit(ctx, decode_request(bodies[index % len(bodies)]))
            if window[0] <= time.perf_counter() <= window[1]:
                batch_rows[answer.batch_id] = answer.batch_rows
            return answer.status == 200

        async with batcher:
            latencies, errors = await measure(batched, concurrency, window)
        on = row("on", concurrency, latencies, errors, duration, list(batch_rows.values()))
        return [off, on]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per row (3)")
    parser.add_argument("--concurrency", default="1,16,64,256", help="callers, comma-separated")
    parser.add_argument("--max-batch-size", type=int, default=64, help="the batcher's cap (64: the model's)")
    parser.add_argument("--max-queue-delay", default="2ms", help="the batcher's max_queue_delay (2ms)")
    parser.add_argument("--model-repository", type=Path, default=None, help="default: build the demo models")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    concurrencies = [int(part) for part in args.concurrency.split(",") if part.strip()]
    config = BatchingConfig(
        max_batch_size=args.max_batch_size,
        max_queue_delay=parse_duration(args.max_queue_delay),
        max_queue_size=max(1024, 2 * max(concurrencies)),
        upstream_binary_tensors=True,
    )
    with tempfile.TemporaryDirectory() as scratch:
        repository = args.model_repository or Path(scratch) / "models"
        build(repository)
        from sklearn.datasets import load_breast_cancer

        features = load_breast_cancer(return_X_y=True)[0].astype(np.float32)
        model_path = repository / MODEL / str(VERSION) / "model.onnx"
        ceiling = in_process(model_path, features, args.max_batch_size, args.duration)
        bodies = [
            orjson.dumps(
                {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": features[i]}]},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            for i in range(BODIES)
        ]
        port = free_port()
        worker = start_worker(repository, port)
        rows: list[Row] = []
        try:
            runner = _runner()
            with runner:
                for concurrency in concurrencies:
                    rows.extend(
                        runner.run(
                            run_pair(f"http://127.0.0.1:{port}", bodies, concurrency, args.duration, config)
                        )
                    )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    report = {
        "model": f"{MODEL} v{VERSION}",
        "cpus": os.cpu_count(),
        "batcher": {"max_batch_size": args.max_batch_size, "max_queue_delay": args.max_queue_delay},
        "ceiling_rows_per_s": ceiling.inferences_per_s,
        "results": [asdict(r) for r in rows],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{MODEL} v{VERSION}, {os.cpu_count()} CPUs shared by the callers, the batcher and one worker")
    print(f"batcher: max_batch_size {args.max_batch_size}, max_queue_delay {args.max_queue_delay}\n")
    columns = ("req/s", 9), ("p50 ms", 8), ("p99 ms", 8), ("calls/s", 9), ("rows/call", 9), ("err", 4)
    print(f"{'batching':8} {'conc':>5} " + " ".join(f"{name:>{width}}" for name, width in columns))
    for r in rows:
        print(
            f"{r.mode:8} {r.concurrency:5d} {r.requests_per_s:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
            f"{r.upstream_calls_per_s:9.0f} {r.mean_batch_rows:9.1f} {r.errors:4d}"
        )
    ceiling_rate = f"{ceiling.inferences_per_s:,.0f}"
    print(f"\nceiling: onnxruntime in process at batch {args.max_batch_size}: {ceiling_rate} rows/s")
    return 0


def _runner() -> asyncio.Runner:
    """An event loop runner on uvloop when installed, as the gateway runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


if __name__ == "__main__":
    sys.exit(main())

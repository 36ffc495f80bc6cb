"""What one monitor sample costs in process: the hand-over on the request's callback, the batched
decode, and the whole background step (decode and sketches), in µs a sample.

    python bench/monitor_step.py [--batch 100] [--features 30] [--compare DIR] [--json]

The samples are those of bench/monitor_cost.py (one row of --features FP32 features, each with its
own numbers, and the upstream's fixed answer), handed to a started `MonitorFilter` as the data path
hands them (`on_sampled_answer`) and studied in steps of --batch, as its background task does at 100
samples a second. Each figure is the best of several repeats of process CPU time. `--compare DIR`
runs the same in a child process with another checkout's sources first on the path (a before and
after, one after the other). Hot loops: a gateway under load pays several times these (its caches
are cold between requests); bench/monitor_cost.py measures that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Repeats of each measurement; the best is kept (the others met a busier machine).
REPEATS = 7
# Steps per repeat: enough process time (tens of ms) for its clock to read it well.
STEPS = 20


def _best_us(work: Callable[[], object], per: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        began = time.process_time()
        for _ in range(STEPS):
            work()
        best = min(best, (time.process_time() - began) / (STEPS * per))
    return best * 1e6


def _take(monitor: Any) -> list[Any]:
    """The samples waiting for the background task, taken: a list now, an asyncio.Queue before."""
    pending = getattr(monitor, "_pending", None)
    if pending is not None:
        taken = list(pending)
        pending.clear()
        return taken
    queue = monitor._queue
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def _measure(batch: int, features: int) -> dict[str, float]:
    from monitor_cost import ANSWER
    from prometheus_client import CollectorRegistry

    from gateway.core.context import RequestContext
    from gateway.core.filters import BuildContext, Response
    from plugins.monitor import FACTORY, MonitorConfig, MonitorFilter
    from plugins.monitor.fast_decode import decode_batch

    rng = np.random.default_rng(0)
    bodies = [
        json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, features], "data": row}]}
        ).encode()
        for row in rng.normal(size=(batch, features)).astype(np.float32).tolist()
    ]
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch) / "reference.npy", rng.normal(size=(1000, features)))
        config = MonitorConfig.model_validate(
            # A flush interval far beyond the run: the steps here are the ones measured.
            {"models": {"bench": {"reference": "reference.npy"}}, "flush_interval": 3600, "queue_size": batch}
        )
        monitor = FACTORY(config, BuildContext("r", "c", CollectorRegistry(), None, scratch))
        assert isinstance(monitor, MonitorFilter)
        await monitor.start()
        try:
            contexts = [
                RequestContext(
                    "POST", "/v2/models/bench/infer", "", {}, "127.0.0.1", 0.0, model="bench", body=body
                )
                for body in bodies
            ]
            answer = Response(200, [("content-type", "application/json")], ANSWER)
            taken: list[Any] = []

            def hand_over() -> None:
                for ctx in contexts:
                    monitor.on_sampled_answer(ctx, answer)
                taken[:] = _take(monitor)  # as the background task would, before the next repeat

            results = {"hand_over": _best_us(hand_over, batch)}
            exchanges = [(one.request, one.response) for one in taken]
            results["decode"] = _best_us(lambda: decode_batch(exchanges), batch)
            results["step"] = _best_us(lambda: monitor.observe(taken), batch)
            return results
        finally:
            await monitor.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--batch", type=int, default=100, help="samples a step (100: 1 s at 1,000 req/s, 10%%)"
    )
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--compare", metavar="DIR", help="the same from another checkout, after this one")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    for path in (str(ROOT), str(ROOT / "bench")):
        if path not in sys.path:
            sys.path.append(path)  # after PYTHONPATH: a --compare child runs the other tree's code
    results = {"this": asyncio.run(_measure(args.batch, args.features))}
    if args.compare:
        argv = [
            sys.executable,
            __file__,
            "--batch",
            str(args.batch),
            "--features",
            str(args.features),
            "--json",
        ]
        env = {**os.environ, "PYTHONPATH": args.compare}
        child = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        results["compare"] = json.loads(child.stdout.splitlines()[-1])["this"]
    for name, one in results.items():
        print(
            f"{name}: hand-over {one['hand_over']:.2f} µs, decode {one['decode']:.2f} µs, "
            f"whole step {one['step']:.2f} µs a sample ({args.batch} a step, {args.features} features)"
        )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the JSON depth bound adds to reading a body: `orjson.loads` against `json_bounds.loads`.

    python bench/json_bounds.py [--runs 40]

Each body is read alternately by both many times per run; the best run of each is kept, timed in
this thread's CPU time so that other processes on a busy machine do not count. Prints a Markdown
table (the one in docs/security.md).
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.core.json_bounds import loads

# About this many bytes are read per timed run, whatever the body's size: long enough to time in
# thread CPU time (microsecond resolution), short enough for 40 runs of 5 bodies in a few seconds.
BYTES_PER_RUN = 2_000_000


def bodies() -> dict[str, bytes]:
    """Bodies as clients send them, from a few values to a 1000-row tensor, flat and nested."""
    values = np.random.default_rng(1)
    return {
        "OIP v2, 4 values": orjson.dumps(
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}
        ),
        "chat, 3 messages": orjson.dumps(
            {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "x" * 300}] * 3}
        ),
        "KServe v1, 100x4 rows (exact check)": orjson.dumps({"instances": values.random((100, 4)).tolist()}),
        "OIP v2, 10,000 values flat": orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1000, 10],
                        "datatype": "FP32",
                        "data": values.random(10_000).tolist(),
                    }
                ]
            }
        ),
        "OIP v2, 1,000x10 nested (exact check)": orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1000, 10],
                        "datatype": "FP32",
                        "data": values.random((1000, 10)).tolist(),
                    }
                ]
            }
        ),
    }


def _best(read: Callable[[], object], number: int, runs: list[float]) -> None:
    runs.append(timeit.Timer(read, timer=time.thread_time).timeit(number=number) / number * 1e6)


def main(argv: list[str] | None = None) -> list[tuple[str, int, float, float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=40, help="timed runs per body; the best is kept (40)")
    args = parser.parse_args(argv)
    rows = []
    print("| Body | Size | orjson.loads (µs) | bounded (µs) | cost (µs) |\n|---|---|---|---|---|")
    for name, body in bodies().items():
        number = max(20, BYTES_PER_RUN // max(100, len(body)))
        plain: list[float] = []
        bounded: list[float] = []
        for _ in range(args.runs):
            _best(partial(orjson.loads, body), number, plain)
            _best(partial(loads, body), number, bounded)
        row = (name, len(body), min(plain), min(bounded))
        rows.append(row)
        print(f"| {name} | {len(body):,} B | {row[2]:.2f} | {row[3]:.2f} | +{row[3] - row[2]:.2f} |")
    return rows


if __name__ == "__main__":
    main()

"""What the `monitor` filter costs the gateway: CPU per request with and without it, side by side.

    python bench/monitor_cost.py [--rate 1000] [--window 3] [--rounds 10] [--features 30]
                                 [--sample-rate 0.1] [--json]

One upstream (a child process of this script) answers every OIP v2 request with a fixed two-class
prediction. Two turnout gateways front it side by side, with the same config except the route's
filters: none, or `monitor` (sampling at --sample-rate, a reference of --features normal features).
Both are driven at once, each at --rate requests/s (paced POSTs of one row of --features FP32
features over keep-alive connections), in --rounds windows of --window seconds. Each gateway's CPU
time (every thread's, in nanoseconds, from /proc/PID/task/*/schedstat) is read at each window's
edges: loaded at the same moments, both gateways meet the same contention from whatever else the
machine runs, so it cancels in their ratio.

Result: CPU microseconds per request of each gateway (total CPU over total answered requests), the
rise in percent, and the spread of the per-window rises, which says how far to trust it. The
monitor's background work (decoding and sketching the samples, once per flush interval) runs in the
gateway process and is counted, give or take its last interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _procs import free_port, spawned, wait_until
from _turnout import data_path_mode, turnout_argv, turnout_config, turnout_path, turnout_ready

# Keep-alive connections the paced load is spread over: enough that one slow answer does not stall
# the rate, few enough that the client (Python, on the same machine) stays cheap.
CONNECTIONS = 16
# A gateway and an upstream start in about a second; a loaded 2-core machine may take several.
START_TIMEOUT_S = 60.0
# Warm-up of each gateway before the rounds: the first requests open connections and fill caches.
WARMUP_S = 2.0
# After the last window, before the monitor's sample counts are read: its background step runs every
# `flush_interval` (1 s by default).
SETTLE_S = 1.5
# The upstream's answer to every request: one row of two class probabilities.
ANSWER = (
    b'{"model_name":"bench","model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32",'
    b'"shape":[1,2],"data":[0.8,0.2]}]}'
)


async def _serve_upstream(port: int) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(head + ANSWER)
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port)
    print(f"upstream listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


async def _paced_load(port: int, body: bytes, rate: float, duration: float) -> int:
    """POST `body` at `rate` requests/s for `duration` s; returns how many were answered."""
    request = (
        b"POST /v2/models/bench/infer HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    interval = CONNECTIONS / rate
    deadline = time.monotonic() + duration
    answered = 0

    async def connection(offset: float) -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        next_at = time.monotonic() + offset
        try:
            while next_at < deadline:
                await asyncio.sleep(max(next_at - time.monotonic(), 0))
                writer.write(request)
                headers = await reader.readuntil(b"\r\n\r\n")
                length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                answered += 1
                next_at += interval
        finally:
            writer.close()

    await asyncio.gather(*(connection(i * interval / CONNECTIONS) for i in range(CONNECTIONS)))
    return answered


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of `pid`, from /proc/PID/task/*/schedstat (nanoseconds, not
    the 10 ms ticks of /proc/PID/stat, so one window of a few seconds is read to within a µs)."""
    total = 0
    for task in os.scandir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended between listing and reading
            total += int(Path(task.path, "schedstat").read_text().split()[0])
    return total / 1e9


class Gateway:
    """One running gateway under test: its ports, its process, and what it has cost so far."""

    def __init__(self, name: str, pid: int, listen: int, admin: int) -> None:
        self.name = name
        self.pid = pid
        self.listen = listen
        self.admin = admin
        self.cpu = 0.0
        self.answered = 0
        self.per_round: list[float] = []

    def sampled(self) -> dict[str, float]:
        """turnout_monitor_samples_total by result, from the gateway's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("turnout_monitor_samples_total{"):
                result = line.split('result="')[1].split('"')[0]
                counts[result] = counts.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
        return counts


def _window(gateways: list[Gateway], body: bytes, args: argparse.Namespace) -> None:
    """Load every gateway at once for one window; each gets its own CPU time and answer count."""

    async def load() -> list[int]:
        loads = (_paced_load(gateway.listen, body, args.rate, args.window) for gateway in gateways)
        return list(await asyncio.gather(*loads))

    before = [cpu_seconds(gateway.pid) for gateway in gateways]
    answered = asyncio.run(load())
    for gateway, began, count in zip(gateways, before, answered, strict=True):
        spent = cpu_seconds(gateway.pid) - began
        gateway.cpu += spent
        gateway.answered += count
        gateway.per_round.append(spent / max(count, 1) * 1e6)


def _run(
    turnout: str, work: Path, upstream_port: int, body: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    monitor = {
        "monitor": {
            "sample_rate": args.sample_rate,
            "models": {"bench": {"reference": str(work / "reference.npy")}},
        }
    }
    filters: dict[str, list[dict[str, Any]]] = {"baseline": [], "monitor": [monitor]}
    with contextlib.ExitStack() as stack:
        gateways: list[Gateway] = []
        for name, chain in filters.items():
            listen, admin = free_port(), free_port()
            path = work / f"{name}.yaml"
            path.write_text(turnout_config(listen, admin, upstream_port, None, chain))
            log = work / f"{name}.log"
            process = stack.enter_context(spawned(turnout_argv(turnout, path), log))
            ready = lambda listen=listen, admin=admin: turnout_ready(listen, admin)  # noqa: E731
            wait_until(ready, process, log, name, START_TIMEOUT_S)
            gateways.append(Gateway(name, process.pid, listen, admin))
        for gateway in gateways:
            asyncio.run(_paced_load(gateway.listen, body, args.rate, WARMUP_S))
        before = gateways[1].sampled()
        for _ in range(args.rounds):
            _window(gateways, body, args)
        # The monitor's background task studies the last window's samples within a flush interval.
        time.sleep(SETTLE_S)
        after = gateways[1].sampled()
        sampled = {result: count - before.get(result, 0.0) for result, count in after.items()}
    baseline, monitored = gateways
    per_request = {g.name: g.cpu / max(g.answered, 1) * 1e6 for g in gateways}
    rises = [(m - b) / b * 100 for b, m in zip(baseline.per_round, monitored.per_round, strict=True) if b > 0]
    return {
        "data_path": data_path_mode(),
        "rate": args.rate,
        "features": args.features,
        "sample_rate": args.sample_rate,
        "rounds": args.rounds,
        "window_s": args.window,
        "answered": {g.name: g.answered for g in gateways},
        "cpu_us_per_request": per_request,
        "rise_percent": (per_request["monitor"] - per_request["baseline"]) / per_request["baseline"] * 100,
        "round_rises_percent": {
            "median": statistics.median(rises),
            "min": min(rises),
            "max": max(rises),
        },
        "monitor_samples": sampled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s per window (1000)")
    parser.add_argument("--window", type=float, default=5.0, help="seconds of each window (5)")
    parser.add_argument("--rounds", type=int, default=8, help="windows (8)")
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--sample-rate", type=float, default=0.1)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        asyncio.run(_serve_upstream(args.serve_upstream))
        return 0
    turnout = turnout_path()
    if turnout is None:
        print("turnout is not installed beside this interpreter or on PATH", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    row = rng.normal(size=args.features).astype(np.float32)
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, args.features], "data": row.tolist()}]}
    ).encode()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        np.save(work / "reference.npy", rng.normal(size=(1000, args.features)))
        upstream_port = free_port()
        upstream_argv = [sys.executable, __file__, "--serve-upstream", str(upstream_port)]
        with spawned(upstream_argv, work / "upstream.log") as upstream:
            log = work / "upstream.log"
            wait_until(lambda: _listening(upstream_port), upstream, log, "upstream", START_TIMEOUT_S)
            summary = _run(turnout, work, upstream_port, body, args)
    cost = summary["cpu_us_per_request"]
    spread = summary["round_rises_percent"]
    print(
        f"{args.rate:g} req/s, {args.features} features, sampling {args.sample_rate:g}, "
        f"{args.rounds} rounds of {args.window:g} s, data path {summary['data_path']}:"
    )
    print(f"  baseline  {cost['baseline']:8.1f} us CPU per request")
    print(f"  monitor   {cost['monitor']:8.1f} us CPU per request  ({summary['rise_percent']:+.1f} %)")
    print(
        f"  per-round rise: median {spread['median']:+.1f} %, from {spread['min']:+.1f} % "
        f"to {spread['max']:+.1f} %; samples {summary['monitor_samples']}"
    )
    if args.json:
        print(json.dumps(summary))
    return 0


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())

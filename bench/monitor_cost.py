"""What the `monitor` filter costs the gateway: CPU per request with and without it, side by side.

    python bench/monitor_cost.py [--rate 1000] [--window 5] [--rounds 8] [--features 30]
                                 [--sample-rate 0.1] [--aa] [--compare DIR] [--json]

One upstream (a child process of this script) answers every OIP v2 request with a fixed two-class
prediction. Two turnout gateways front it side by side, with the same config except the route's
filters: none, or `monitor` (sampling at --sample-rate, a reference of --features normal features).
Each of --rounds rounds starts both afresh (the order rotates from round to round), warms them up,
and drives both at once, each at --rate requests/s (paced POSTs of one row of --features FP32 features
over keep-alive connections), for --window seconds. Each gateway's CPU time (every thread's, in
nanoseconds, from /proc/PID/task/*/schedstat) is read before the window and SETTLE_S after it, so
the monitor's background step for the window's last samples is counted (both idle as long). Loaded
at the same moments, both meet the same contention from whatever else the machine runs, and fresh
processes in alternating order keep where the machine places a process from favouring one.

Result: CPU microseconds per request of each gateway (total CPU over total answered requests), the
rise in percent, and the median and spread of the per-round rises, which say how far to trust it.
`--aa` adds a third gateway with no monitor to the same rounds (an A/A pair loaded at the same
moments): its "rise" over the baseline is the harness's own noise in this very run. `--extra-rate
SHARE` adds a gateway whose monitor samples SHARE (0.0001: what its presence costs a request left
out of the sample). `--compare DIR`
adds a gateway with the monitor running another source tree of turnout (DIR, a checkout: a before
and after of a change, side by side). `--calibrate` runs the two gateways with no monitor on either
side.

Every gateway runs its data path as the environment says: from source with TURNOUT_PURE_PYTHON=1
(fair between a tree with a compiled build and one without), else compiled where the tree has a
fresh build (gateway/core/native.py). The gateways other than DIR's run the turnout importable here:
set PYTHONPATH to run them from yet another tree, such as a built checkout of the code under test.
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
# Warm-up of each round's fresh gateways: the first requests open connections and fill caches.
WARMUP_S = 2.0
# After a window, before its closing CPU reading: the monitor's background step runs every
# `flush_interval` (1 s by default), so its step for the window's last samples falls in here.
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
    """One gateway under test: its ports and process while it runs, and its totals over rounds."""

    def __init__(self, name: str, source: str | None = None) -> None:
        self.name = name
        self.source = source
        """Another checkout of turnout this gateway runs from (its sources first on the path)."""
        self.pid = 0
        self.listen = 0
        self.admin = 0
        self.cpu = 0.0
        self.answered = 0
        self.per_round: list[float] = []
        self.sampled: dict[str, float] = {}

    def samples(self) -> dict[str, float]:
        """turnout_monitor_samples_total by result, from the running gateway's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("turnout_monitor_samples_total{"):
                result = line.split('result="')[1].split('"')[0]
                counts[result] = counts.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
        return counts


def _load_all(gateways: list[Gateway], body: bytes, rate: float, seconds: float) -> list[int]:
    """Load every gateway at once, each at `rate`; how many answers each gave."""

    async def load() -> list[int]:
        return list(await asyncio.gather(*(_paced_load(g.listen, body, rate, seconds) for g in gateways)))

    return asyncio.run(load())


def _round(
    gateways: list[Gateway],
    configs: dict[str, str],
    turnout: str,
    work: Path,
    body: bytes,
    args: argparse.Namespace,
) -> None:
    """Start the gateways (in the given order), warm them up, and measure one window of load."""
    with contextlib.ExitStack() as stack:
        for gateway in gateways:
            gateway.listen, gateway.admin = free_port(), free_port()
            path = work / f"{gateway.name}.yaml"
            config = configs[gateway.name].replace("LISTEN_PORT", str(gateway.listen))
            path.write_text(config.replace("ADMIN_PORT", str(gateway.admin)))
            log = work / f"{gateway.name}.log"
            argv = turnout_argv(turnout, path)
            if gateway.source is not None:  # env execs turnout: the process measured is turnout's own
                argv = ["env", f"PYTHONPATH={gateway.source}", *argv]
            process = stack.enter_context(spawned(argv, log))
            ready = lambda g=gateway: turnout_ready(g.listen, g.admin)  # noqa: E731
            wait_until(ready, process, log, gateway.name, START_TIMEOUT_S)
            gateway.pid = process.pid
        _load_all(gateways, body, args.rate, WARMUP_S)
        time.sleep(SETTLE_S)
        samples = [gateway.samples() for gateway in gateways]
        before = [cpu_seconds(gateway.pid) for gateway in gateways]
        answered = _load_all(gateways, body, args.rate, args.window)
        # The monitor's background task studies the window's last samples within a flush interval;
        # both gateways idle as long, at a cost far below the window's.
        time.sleep(SETTLE_S)
        for gateway, began, count, earlier in zip(gateways, before, answered, samples, strict=True):
            spent = cpu_seconds(gateway.pid) - began
            gateway.cpu += spent
            gateway.answered += count
            gateway.per_round.append(spent / max(count, 1) * 1e6)
            for result, total in gateway.samples().items():
                gateway.sampled[result] = gateway.sampled.get(result, 0.0) + total - earlier.get(result, 0.0)


def _run(
    turnout: str, work: Path, upstream_port: int, body: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    monitor = {
        "monitor": {
            "sample_rate": args.sample_rate,
            "models": {"bench": {"reference": str(work / "reference.npy")}},
        }
    }
    # --calibrate: the second gateway runs without the monitor too, so the "rise" is the harness's
    # own bias and noise between two identical gateways (an A/A run).
    filters: dict[str, list[dict[str, Any]]] = {
        "baseline": [],
        "monitor": [] if args.calibrate else [monitor],
    }
    sources: dict[str, str | None] = {"baseline": None, "monitor": None}
    if args.aa:
        filters["baseline-2"], sources["baseline-2"] = [], None
    if args.compare:
        filters["monitor@compare"], sources["monitor@compare"] = [monitor], args.compare
    if args.extra_rate:
        # The same monitor drawing another share: splits what its presence costs every request from
        # what the drawn ones cost.
        name = f"monitor@{args.extra_rate:g}"
        filters[name] = [{"monitor": {**monitor["monitor"], "sample_rate": args.extra_rate}}]
        sources[name] = None
    configs = {
        name: turnout_config(0, 0, upstream_port, None, chain).replace(
            "port: 0}\nadmin: {host: 127.0.0.1, port: 0}",
            "port: LISTEN_PORT}\nadmin: {host: 127.0.0.1, port: ADMIN_PORT}",
        )
        for name, chain in filters.items()
    }
    gateways = [Gateway(name, sources[name]) for name in filters]
    for round_ in range(args.rounds):
        # Fresh processes each round, the order rotated: where the machine places a process (its
        # core, its neighbours) then favours no gateway.
        turn = round_ % len(gateways)
        _round(gateways[turn:] + gateways[:turn], configs, turnout, work, body, args)
    sampled = gateways[1].sampled
    baseline = gateways[0]
    per_request = {g.name: g.cpu / max(g.answered, 1) * 1e6 for g in gateways}
    rises: dict[str, list[float]] = {
        g.name: [(m - b) / b * 100 for b, m in zip(baseline.per_round, g.per_round, strict=True) if b > 0]
        for g in gateways[1:]
    }
    return {
        "data_path": data_path_mode(),
        "rate": args.rate,
        "features": args.features,
        "sample_rate": args.sample_rate,
        "calibrate": args.calibrate,
        "rounds": args.rounds,
        "window_s": args.window,
        "answered": {g.name: g.answered for g in gateways},
        "cpu_us_per_request": per_request,
        "rise_percent": {
            name: (per_request[name] - per_request["baseline"]) / per_request["baseline"] * 100
            for name in rises
        },
        "round_rises_percent": {
            name: {"median": statistics.median(one), "min": min(one), "max": max(one)}
            for name, one in rises.items()
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
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="A/A: both gateways without the monitor (the harness's noise)",
    )
    parser.add_argument(
        "--aa", action="store_true", help="add a second gateway without the monitor (noise, same run)"
    )
    parser.add_argument(
        "--compare", metavar="DIR", help="add a gateway with the monitor from another turnout checkout"
    )
    parser.add_argument(
        "--extra-rate",
        type=float,
        metavar="SHARE",
        help="add a gateway whose monitor samples this share instead (0.0001: its presence alone)",
    )
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
    print(
        f"{args.rate:g} req/s, {args.features} features, sampling {args.sample_rate:g}, "
        f"{args.rounds} rounds of {args.window:g} s, data path {summary['data_path']}:"
    )
    print(f"  {'baseline':16} {cost['baseline']:8.1f} us CPU per request")
    for name, spread in summary["round_rises_percent"].items():
        print(
            f"  {name:16} {cost[name]:8.1f} us CPU per request ({summary['rise_percent'][name]:+.1f} %); "
            f"per-round rise median {spread['median']:+.1f} %, from {spread['min']:+.1f} % "
            f"to {spread['max']:+.1f} %"
        )
    print(f"  monitor samples {summary['monitor_samples']}")
    if args.json:
        print(json.dumps(summary))
    return 0


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())

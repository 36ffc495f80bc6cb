"""What the `monitor` filter costs the gateway: CPU per request with and without it, at a set rate.

    python bench/monitor.py [--rate 1000] [--duration 10] [--features 30] [--sample-rate 0.1]
                            [--rounds 3] [--json]

One upstream (in a child process of this script) answers every OIP v2 request with a fixed
two-class prediction. Two turnout gateways front it in turn, with the same config except the route's
filters: none, or `monitor` (sampling at --sample-rate, a reference of --features normal features).
Each round drives each gateway for --duration seconds at --rate requests/s (paced POSTs of one row of
--features FP32 features over keep-alive connections) and reads the gateway's CPU time (user +
system, from /proc) before and after. The result is CPU microseconds per request for each, the
median over --rounds interleaved rounds (drift in a shared machine's speed falls on both alike),
and the rise in percent. The monitor's share includes buffering both bodies (it reads them) and its
background task's decoding, which run in the gateway process too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _procs import free_port, group_cpu_seconds, spawned, wait_until
from _turnout import turnout_argv, turnout_config, turnout_path, turnout_ready

# Keep-alive connections the paced load is spread over: enough that one slow answer does not stall
# the rate, few enough that the client (Python, on the same machine) stays cheap.
CONNECTIONS = 16
# A gateway and an upstream start in about a second; a loaded 2-core machine may take several.
START_TIMEOUT_S = 60.0
# Warm-up before each measured window: the first requests open connections and fill caches.
WARMUP_S = 2.0
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


def _measure(
    turnout: str, config: str, work: Path, name: str, body: bytes, args: argparse.Namespace
) -> float:
    """CPU microseconds per request of one gateway under the paced load."""
    listen, admin = free_port(), free_port()
    config = config.replace("LISTEN_PORT", str(listen)).replace("ADMIN_PORT", str(admin))
    path = work / f"{name}.yaml"
    path.write_text(config)
    with spawned(turnout_argv(turnout, path), work / f"{name}.log") as gateway:
        wait_until(lambda: turnout_ready(listen, admin), gateway, work / f"{name}.log", name, START_TIMEOUT_S)
        asyncio.run(_paced_load(listen, body, args.rate, WARMUP_S))
        before = group_cpu_seconds(gateway.pid)
        answered = asyncio.run(_paced_load(listen, body, args.rate, args.duration))
        spent = group_cpu_seconds(gateway.pid) - before
    return spent / max(answered, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--sample-rate", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
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
            wait_until(
                lambda: _listening(upstream_port),
                upstream,
                work / "upstream.log",
                "upstream",
                START_TIMEOUT_S,
            )
            monitor = {
                "monitor": {
                    "sample_rate": args.sample_rate,
                    "models": {"bench": {"reference": str(work / "reference.npy")}},
                }
            }
            configs = {
                "baseline": turnout_config(0, 0, upstream_port, None),
                "monitor": turnout_config(0, 0, upstream_port, None, filters=[monitor]),
            }
            for name in configs:
                configs[name] = configs[name].replace(
                    "port: 0}\nadmin: {host: 127.0.0.1, port: 0}",
                    "port: LISTEN_PORT}\nadmin: {host: 127.0.0.1, port: ADMIN_PORT}",
                )
            results: dict[str, list[float]] = {name: [] for name in configs}
            for _ in range(args.rounds):
                for name, config in configs.items():
                    results[name].append(_measure(turnout, config, work, name, body, args))
    baseline = statistics.median(results["baseline"])
    monitored = statistics.median(results["monitor"])
    summary = {
        "rate": args.rate,
        "features": args.features,
        "sample_rate": args.sample_rate,
        "cpu_us_per_request": {"baseline": baseline, "monitor": monitored},
        "rounds": results,
        "rise_percent": (monitored - baseline) / baseline * 100,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.rate:g} req/s, {args.features} features, sampling {args.sample_rate:g}:")
        print(f"  baseline  {baseline:8.1f} us CPU per request")
        print(f"  monitor   {monitored:8.1f} us CPU per request  ({summary['rise_percent']:+.1f} %)")
    return 0


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())

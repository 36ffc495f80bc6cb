"""Where the ext_proc decision's tail latency could come from, measured without the noise of a
shared machine: CPU time of the event loop's thread (`time.thread_time`), which no other job inflates.

    python bench/mesh_tail.py [--decisions 20000] [--gen0 N]   # in process, at about 1,000/s
    python bench/mesh_tail.py --wakeup [--rounds 3]        # a woken thread beside a busy one

In process (bench/mesh.py's route: API key, rate limit, A/B arm with its exposure, endpoint pick):
the CPU per decision (p50, p99, p99.9, max); each garbage collection's generation and CPU time
(after the gateway's own `gc.freeze`; `--gen0`: with that young-generation threshold instead of
Python's 700); the recorder's seal (its journal line written on the event
loop); the event store's writer thread, CPU per batch and how much of it is Python (`aggregate`).

`--wakeup`: a thread blocked on a socket on one pinned CPU, woken 1,000 times a second by another
process, with beside it nothing, or a thread burning the writer's bursts (2.2 ms of CPU every
40 ms, the GIL released as SQLite releases it) at nice 0 or nice 10: whether the store's writer
delays the loop's wakeups.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import defaultdict
from multiprocessing import Process
from pathlib import Path
from typing import Any

import yaml
from mesh import config  # bench/mesh.py: the same gateway, route and experiment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _percentiles(values: list[float], *fractions: float) -> list[float]:
    ordered = sorted(values)
    return [round(ordered[min(len(ordered) - 1, int(len(ordered) * f))] * 1e6) for f in fractions]


async def in_process(decisions: int, gen0: int | None = None) -> dict[str, Any]:
    import experiments.recorder as recorder_module
    import experiments.store.sqlite as sqlite_module
    from gateway.loading import load_gateway_config
    from gateway.mesh.exchange import MeshExchange
    from gateway.server import Gateway

    collections: dict[int, list[float]] = defaultdict(list)
    began: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.thread_time()
        else:
            collections[info["generation"]].append(time.thread_time() - began[0])

    seals: list[float] = []
    seal = recorder_module.EventRecorder._seal

    def timed_seal(self: Any) -> None:
        cpu = time.thread_time()
        try:
            seal(self)
        finally:
            seals.append(time.thread_time() - cpu)

    writes: list[float] = []
    aggregates: list[float] = []
    write, aggregate = sqlite_module.SqliteEventStore._write, sqlite_module.aggregate  # type: ignore[attr-defined]

    def timed_write(self: Any, events: Any, batch_id: Any) -> None:
        cpu = time.thread_time()
        try:
            write(self, events, batch_id)
        finally:
            writes.append(time.thread_time() - cpu)

    def timed_aggregate(*args: Any) -> Any:
        cpu = time.thread_time()
        try:
            return aggregate(*args)
        finally:
            aggregates.append(time.thread_time() - cpu)

    recorder_module.EventRecorder._seal = timed_seal  # type: ignore[method-assign]
    sqlite_module.SqliteEventStore._write = timed_write  # type: ignore[method-assign]
    sqlite_module.aggregate = timed_aggregate  # type: ignore[attr-defined,assignment]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        document = config(tmp)
        del document["mesh"]
        path = tmp / "gateway.yaml"
        path.write_text(yaml.safe_dump(document))
        gateway = Gateway(load_gateway_config(path), path)
        await gateway.start()
        frozen = gc.get_freeze_count()
        threshold = gc.get_threshold()
        if gen0 is not None:
            gc.set_threshold(gen0, *threshold[1:])
        requests = [
            [
                (":method", "POST"),
                (":path", "/v2/models/risk/infer"),
                ("x-api-key", "k1"),
                ("x-user-id", f"u{i}"),
            ]
            for i in range(1000)
        ]
        costs: list[float] = []
        gc.callbacks.append(on_gc)
        try:
            for index in range(decisions):
                cpu = time.thread_time()
                exchange = MeshExchange.from_headers(gateway.runtime, requests[index % 1000])
                step = exchange.decide()
                with contextlib.suppress(StopIteration):
                    step.send(None)  # an in-memory decision completes at its first step
                exchange.finish(seen=False)
                costs.append(time.thread_time() - cpu)
                if index % 10 == 9:  # ten decisions per 10 ms: about 1,000/s
                    await asyncio.sleep(0.01)
        finally:
            gc.callbacks.remove(on_gc)
            gc.set_threshold(*threshold)
            await gateway.shutdown(drain_timeout=1.0)
    return {
        "decisions": decisions,
        "decision_cpu_us_p50_p99_p999_max": _percentiles(costs, 0.5, 0.99, 0.999, 1.0),
        "frozen_objects": frozen,
        "gc_threshold": [gen0 or threshold[0], *threshold[1:]],
        "collections": {
            f"gen{generation}": {"count": len(times), "cpu_us_max": _percentiles(times, 1.0)[0]}
            for generation, times in sorted(collections.items())
        },
        "seal_cpu_us_median_max": [len(seals), *_percentiles(seals, 0.5, 1.0)],
        "writer_cpu_us_per_batch_median_p90": [len(writes), *_percentiles(writes, 0.5, 0.9)],
        "writer_python_aggregate_us_median": _percentiles(aggregates, 0.5)[0] if aggregates else None,
    }


# ----- --wakeup -----

_BURST_S = 0.0022  # the event store writer's median CPU per batch (in-process figures above)
_BURST_EVERY_S = 0.04  # a batch every 40 ms at 1,000 decisions/s


def _sender(port: int, count: int, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    began = time.monotonic()
    for index in range(count):
        due = began + index / 1000
        while time.monotonic() < due:
            time.sleep(max(0.0, due - time.monotonic() - 0.0002))
        connection.sendall(struct.pack("d", time.monotonic()))
    connection.close()


def _burn(stop: threading.Event, nice: int) -> None:
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    data = b"x" * (1 << 20)
    while not stop.is_set():
        end = time.thread_time() + _BURST_S
        while time.thread_time() < end:
            hashlib.sha256(data).digest()  # C code that releases the GIL, as SQLite's calls do
        stop.wait(_BURST_EVERY_S)


def _wakeups(beside: str, count: int = 4000) -> list[float]:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    sender = Process(target=_sender, args=(server.getsockname()[1], count, cpus[-1]))
    sender.start()
    connection, _ = server.accept()
    stop = threading.Event()
    burner = None
    if beside != "nothing":
        burner = threading.Thread(target=_burn, args=(stop, 0 if beside == "burst nice 0" else 10))
        burner.start()
    latencies: list[float] = []
    buffer = b""
    while len(latencies) < count:
        data = connection.recv(65536)
        if not data:
            break
        now = time.monotonic()
        buffer += data
        whole = len(buffer) - len(buffer) % 8
        latencies.extend(now - sent for (sent,) in struct.iter_unpack("d", buffer[:whole]))
        buffer = buffer[whole:]
    stop.set()
    sender.join()
    if burner is not None:
        burner.join()
    server.close()
    return latencies


def wakeup(rounds: int) -> dict[str, list[list[float]]]:
    results: dict[str, list[list[float]]] = defaultdict(list)
    for _ in range(rounds):
        for beside in ("nothing", "burst nice 0", "burst nice 10"):
            latencies = _wakeups(beside)
            ordered = sorted(latencies)
            results[beside].append(
                [round(ordered[int(len(ordered) * f)] * 1000, 3) for f in (0.5, 0.99, 0.999)]
            )
    return dict(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--wakeup", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gen0", type=int, help="the young generation's threshold (Python's: 700)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if args.wakeup:
        results: dict[str, Any] = {"wakeup_ms_p50_p99_p999": wakeup(args.rounds)}
    else:
        results = asyncio.run(in_process(args.decisions, args.gen0))
    results["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

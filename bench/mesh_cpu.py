"""Server CPU per ext_proc decision, thread by thread: the event loop's and the event store writer's.

    python bench/mesh_cpu.py [--turnout DIR ...] [--rounds 3] [--seconds 5]

bench/mesh.py's gateway and load (API key, rate limit, A/B arm with its exposure, endpoint pick;
header-only, 32 streams in flight on one connection), served by a `turnout run` process from each
`--turnout` tree in turn (default: this checkout), from source (`TURNOUT_PURE_PYTHON=1`), pinned to
the first CPU, the trees interleaved round by round. Each thread's CPU time comes from
/proc/PID/task, so the figures hold whatever else shares the core; the loop thread is the server's
first. Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import _grpc_load
import grpc
import yaml
from mesh import HOST, PROCESS, config, headers_message

ROOT = Path(__file__).resolve().parents[1]


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user and system) of each thread of `pid`, by thread id (proc(5))."""
    seconds: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        seconds[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


async def measure(port: int, pid: int, seconds: float) -> tuple[float, float, float]:
    """(decisions/s, loop thread µs per decision, other threads' µs per decision)."""
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)
    messages = [headers_message(i).SerializeToString() for i in range(1000)]
    await _grpc_load.closed_loop(HOST, port, PROCESS, messages, seconds=1, concurrency=32)  # warm-up
    before = thread_cpu(pid)
    run = await _grpc_load.closed_loop(HOST, port, PROCESS, messages, seconds=seconds, concurrency=32)
    after = thread_cpu(pid)
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    loop = spent.pop(pid, 0.0)
    return run.per_second, loop / run.answered * 1e6, sum(spent.values()) / run.answered * 1e6


def one_run(tree: Path, seconds: float) -> tuple[float, float, float]:
    cpus = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as name:
        document = config(Path(name))
        path = Path(name) / "mesh.yaml"
        path.write_text(yaml.safe_dump(document))
        env = dict(os.environ, PYTHONPATH=str(tree), TURNOUT_PURE_PYTHON="1")
        command = [sys.executable, "-m", "gateway.cli", "run", "--config", str(path), "--no-watch"]
        server = subprocess.Popen(
            [*command, "--log-level", "warning"],
            cwd=tree,
            env=env,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}),
        )
        try:
            if len(cpus) > 1:
                os.sched_setaffinity(0, set(cpus[1:]))
            return asyncio.run(measure(document["mesh"]["port"], server.pid, seconds))
        finally:
            server.terminate()
            server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turnout", type=Path, action="append", help="a turnout tree (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    trees: list[Path] = args.turnout or [ROOT]
    results: dict[Path, list[tuple[float, float, float]]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            rate, loop, others = one_run(tree, args.seconds)
            results[tree].append((rate, loop, others))
            print(
                f"{tree}: {rate:,.0f} decisions/s, µs CPU per decision: loop {loop:.1f}, other threads "
                f"{others:.1f}, total {loop + others:.1f} (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    for tree, runs in results.items():
        loop = statistics.median(r[1] for r in runs)
        others = statistics.median(r[2] for r in runs)
        total = statistics.median(r[1] + r[2] for r in runs)
        print(f"median {tree}: loop {loop:.1f}, other threads {others:.1f}, total {total:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dynamic batching off and on, side by side, through a running turnout, beside the model's ceiling.

    python bench/batching.py [--duration 5s] [--warmup 2s] [--concurrency 1,16,64,256] [--rounds 3]
                             [--models risk-mlp:1,risk:2] [--max-batch-size 32] [--max-queue-delay 2ms]
                             [--pinning auto|worker|gateway|none] [--loadgen auto|wrk|python]
                             [--model-repository DIR] [--json]

One inference worker serves the demo models, and one turnout gateway fronts it with two routes to
the same cluster: requests carrying `x-bench-batching: on` go through the `batching` filter
(max_batch_size, max_queue_delay, binary tensors upstream), the others are proxied one by one. At
each concurrency N, N keep-alive connections POST one-row OIP v2 JSON requests (distinct rows of
the breast-cancer data, cycled) back to back, first unbatched, then batched, each run a discarded
warm-up and a measured window (wrk with a generated Lua script when installed, else Python callers).

Concurrency 1 has two more rows. "on, no delay" goes through the same filter with max_queue_delay
0: the batching machinery's own cost, apart from the wait for others that a lone caller never gets.
"off, idle" proxies requests one by one while the caller pauses max_queue_delay before each: the
machine idles as long as while a batched request waits, so the row shows what idling alone costs
the next request (on a virtual machine, a CPU that slept computes slower for a while). Its four
modes are measured in --rounds interleaved rounds, and each row shows the median of its rounds:
drift in a shared machine's speed over minutes then falls on every mode alike.
Upstream calls/s, rows/call and model ms/call are the worker's own: its batch size and inference
time histograms, read from its /metrics before and after each measured window; wait ms is the
gateway's, the mean time a request spent in its batch queue (its queue delay histogram).

The ceiling is the model run by onnxruntime in this process at batch = max_batch_size, with the
worker's session options (one intra-op, one inter-op thread), on the CPU the worker will have: what
batching could reach if HTTP, JSON and the gateway cost nothing.

Two models, in one run:
  * risk-mlp v1, compute-bound (a wide neural network: about 4,500 rows/s on one core at batch
    32, far less at batch 1): what batching is for, and the model the project's targets apply to;
  * risk v2, HTTP-bound (gradient boosting, about a microsecond a row): no HTTP front door comes
    near its in-process ceiling, so its fraction of the ceiling is shown, not held to a target.

--pinning worker (the default when taskset and two CPUs are there) gives the worker a CPU of its
own, where its inference thread computes, and puts the gateway and the load generator on the other;
--pinning gateway gives the gateway a CPU of its own instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from _procs import (
    ChildFailed,
    Pinning,
    exit_on_termination,
    free_port,
    http_status,
    interrupts_deferred,
    start_service,
)
from _results import LoadResult, percentile
from _turnout import turnout_argv, turnout_path
from _wrk import WrkRunner
from proxy import LoadRunner
from worker import in_process

from gateway.core.config_types import parse_duration
from inference_workers.examples.build_models import build

# The header that sends a request through the batching route; requests without it are proxied alone.
BATCHED_HEADER = ("x-bench-batching", "on")
# The same filter with max_queue_delay 0, measured at concurrency 1 only: what the batching machinery
# itself adds to a request, apart from the wait for others (there are none at c=1).
NO_DELAY_HEADER = ("x-bench-batching", "no-delay")
NO_DELAY_MODE = "on, no delay"
# Unbatched requests, the caller pausing max_queue_delay before each: the idle time of a batched
# request's wait, without the batcher. Measured at concurrency 1 only.
IDLE_MODE = "off, idle"
# The modes measured at concurrency 1, in the order of each round, and at any other concurrency.
LONE_MODES = ("off", "on", NO_DELAY_MODE, IDLE_MODE)
LOADED_MODES = ("off", "on")
JSON_CONTENT = ("Content-Type", "application/json")
# Distinct request bodies cycled by the load generator: every request a real row, few enough to
# build instantly.
BODIES = 256
# A worker imports onnxruntime and scikit-learn and loads its models; turnout imports its stack:
# each takes seconds on a busy two-core machine, a minute is something wrong.
READY_TIMEOUT_S = 60.0
# wrk's Lua long-string brackets around each body; JSON numbers never contain the closing one.
_LUA_OPEN, _LUA_CLOSE = "[==[", "]==]"


@dataclass(frozen=True, slots=True)
class BenchModel:
    name: str
    version: int
    bound: str  # "compute" or "http": what limits its throughput through any HTTP front door

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.name}/versions/{self.version}/infer"


# Which models this benchmark knows how to describe; the first compute-bound one carries the targets.
KNOWN_MODELS = {("risk-mlp", 1): "compute", ("risk", 2): "http"}


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
    model_ms_per_call: float
    """Mean time one upstream call spent in the model, in the worker."""
    wait_ms: float
    """Mean time a request waited in the gateway's batch queue (0 unbatched)."""
    rounds: int = 1
    """Interleaved rounds whose medians (p50, p99, model ms) and means (rates) the row shows."""


def combine(rounds: Sequence[Row]) -> Row:
    """One row for several rounds of a mode: medians of latencies, means of rates, sums of counts."""
    first = rounds[0]
    return Row(
        first.mode,
        first.concurrency,
        statistics.fmean(r.requests_per_s for r in rounds),
        statistics.median(r.p50_ms for r in rounds),
        statistics.median(r.p99_ms for r in rounds),
        sum(r.requests for r in rounds),
        sum(r.errors for r in rounds),
        statistics.fmean(r.upstream_calls_per_s for r in rounds),
        statistics.fmean(r.mean_batch_rows for r in rounds),
        statistics.median(r.model_ms_per_call for r in rounds),
        statistics.median(r.wait_ms for r in rounds),
        len(rounds),
    )


def _models(text: str) -> tuple[BenchModel, ...]:
    models = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, version = part.partition(":")
        key = (name, int(version or "1"))
        if key not in KNOWN_MODELS:
            known = ",".join(f"{n}:{v}" for n, v in KNOWN_MODELS)
            raise argparse.ArgumentTypeError(f"models are some of {known}; got {part!r}")
        models.append(BenchModel(*key, KNOWN_MODELS[key]))
    if not models:
        raise argparse.ArgumentTypeError("name at least one model")
    return tuple(models)


def _seconds(text: str) -> float:
    """A duration: seconds as a bare number (3), or with a unit (3s, 500ms)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=_seconds, default=5.0, help="measured time per run (5s)")
    parser.add_argument("--warmup", type=_seconds, default=2.0, help="discarded warm-up per run (2s)")
    parser.add_argument("--concurrency", default="1,16,64,256", help="connections, comma-separated")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the modes at concurrency 1 (3)"
    )
    parser.add_argument(
        "--models", type=_models, default=_models("risk-mlp:1,risk:2"), help="NAME:VERSION,..."
    )
    parser.add_argument("--max-batch-size", type=int, default=32, help="the batching filter's cap (32)")
    parser.add_argument(
        "--max-queue-delay", default="2ms", help="the batching filter's max_queue_delay (2ms)"
    )
    parser.add_argument("--pinning", choices=("auto", "worker", "gateway", "none"), default="auto")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--model-repository", type=Path, default=None, help="default: build the demo models")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    args = parser.parse_args(argv)
    args.concurrency = [int(part) for part in args.concurrency.split(",") if part.strip()]
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    parse_duration(args.max_queue_delay)  # refuse a bad value before starting anything
    if args.loadgen == "wrk" and shutil.which("wrk") is None:
        parser.error("--loadgen wrk: wrk is not installed")
    return args


@dataclass(frozen=True, slots=True)
class Layout:
    """Which CPUs the worker, the gateway and the load generator run on, as taskset prefixes."""

    pinning: Pinning
    worker_alone: bool

    def worker(self, argv: Sequence[str]) -> list[str]:
        return self.pinning.proxy(argv) if self.worker_alone else self.pinning.client(argv)

    def gateway(self, argv: Sequence[str]) -> list[str]:
        return self.pinning.client(argv) if self.worker_alone else self.pinning.proxy(argv)

    def loadgen(self, argv: Sequence[str]) -> list[str]:
        return self.pinning.client(argv)

    @property
    def worker_cpus(self) -> str | None:
        return self.pinning.proxy_cpus if self.worker_alone else self.pinning.client_cpus

    @property
    def description(self) -> str:
        cpus = (self.pinning.proxy_cpus, self.pinning.client_cpus)
        if None in cpus:
            return self.pinning.description
        alone, others = ("worker", "gateway") if self.worker_alone else ("gateway", "worker")
        return f"taskset: {alone} on CPU {cpus[0]}; {others} and load generator on CPU {cpus[1]}"


def choose_layout(choice: str) -> Layout:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if choice == "none" or shutil.which("taskset") is None or len(cpus) < 2:
        reason = "asked" if choice == "none" else "taskset and two CPUs needed"
        return Layout(Pinning(None, None, f"none ({reason}): every process on every CPU"), False)
    return Layout(Pinning(str(cpus[0]), str(cpus[1]), ""), choice != "gateway")


@contextlib.contextmanager
def running_on(cpus: str | None) -> Iterator[None]:
    """Keep this process on ``cpus`` (taskset's syntax: one CPU here) for the block, if given."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def request_bodies(rows: np.ndarray) -> list[bytes]:
    return [
        orjson.dumps(
            {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": row}]},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        for row in rows[:BODIES]
    ]


def write_wrk_script(path: Path, bodies: Sequence[bytes], pause_ms: int = 0) -> Path:
    """A wrk script POSTing ``bodies`` in turn (prebuilt in init, so each request costs one lookup),
    each connection pausing ``pause_ms`` before each request when given (wrk counts whole ms)."""
    quoted = []
    for body in bodies:
        text = body.decode()
        if _LUA_CLOSE in text:
            raise ValueError("a request body holds the Lua long-string delimiter")
        quoted.append(f"  {_LUA_OPEN}{text}{_LUA_CLOSE},")
    pause = f"\nfunction delay()\n  return {pause_ms}\nend\n" if pause_ms > 0 else ""
    path.write_text(
        "-- Generated by bench/batching.py: one-row OIP v2 inference requests, POSTed in turn.\n"
        "local bodies = {\n" + "\n".join(quoted) + "\n}\n"
        "local requests = {}\n"
        "local count = 0\n\n"
        "function init(args)\n"
        "  for i, body in ipairs(bodies) do\n"
        '    requests[i] = wrk.format("POST", nil, nil, body)\n'
        "  end\n"
        "end\n\n"
        "function request()\n"
        "  count = count % #requests + 1\n"
        "  return requests[count]\n"
        "end\n" + pause
    )
    return path


def pause_ms(max_queue_delay: str) -> int:
    """The caller's pause in the "off, idle" mode: max_queue_delay in whole milliseconds (what wrk
    can wait), at least one."""
    return max(1, round(parse_duration(max_queue_delay) * 1000))


class PythonCallers:
    """The fallback without wrk: N aiohttp callers in this process, on the load generator's CPU,
    each POSTing the next body as soon as its answer is complete; far slower than wrk, which the
    output names."""

    name = "python (aiohttp)"

    def __init__(
        self,
        bodies: Sequence[bytes],
        headers: Sequence[tuple[str, str]],
        cpus: str | None,
        pause_s: float = 0.0,
    ) -> None:
        self._bodies, self._headers, self._cpus, self._pause_s = bodies, dict(headers), cpus, pause_s

    def run(self, url: str, connections: int, duration_s: float, log_path: Path) -> LoadResult:
        with running_on(self._cpus):  # where wrk would run
            return asyncio.run(self._run(url, connections, duration_s))

    async def _run(self, url: str, connections: int, duration_s: float) -> LoadResult:
        latencies: list[float] = []
        errors = 0
        end = time.perf_counter() + duration_s

        async def caller(session: aiohttp.ClientSession, index: int) -> None:
            nonlocal errors
            while time.perf_counter() < end:
                if self._pause_s:
                    await asyncio.sleep(self._pause_s)
                began = time.perf_counter()
                body = self._bodies[index % len(self._bodies)]
                index += connections
                async with session.post(url, data=body, headers=self._headers) as response:
                    await response.read()
                finished = time.perf_counter()
                if finished > end:
                    return
                if response.status == 200:
                    latencies.append(finished - began)
                else:
                    errors += 1

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(caller(session, offset) for offset in range(connections)))
        latencies.sort()
        return LoadResult(
            len(latencies),
            errors,
            duration_s,
            percentile(latencies, 50) * 1000,
            percentile(latencies, 99) * 1000,
        )


def batch_counts(metrics: str, model: BenchModel) -> tuple[float, float]:
    """(calls, rows) the worker has answered for ``model``: its batch size histogram's count and sum."""
    return _histogram(metrics, "turnout_worker_batch_size", model)


def model_seconds(metrics: str, model: BenchModel) -> float:
    """Seconds the worker's calls for ``model`` spent in the model: its inference histogram's sum."""
    return _histogram(metrics, "turnout_worker_inference_seconds", model)[1]


def queue_wait(metrics: str, model: BenchModel) -> tuple[float, float]:
    """(requests, seconds) the gateway's batch queues have held requests for ``model``, over every
    cluster: its queue delay histogram's count and sum."""
    found = {}
    for suffix in ("count", "sum"):
        labels = rf'\{{[^}}]*model="{re.escape(model.name)}"[^}}]*\}}'
        pattern = rf"^turnout_batch_queue_delay_seconds_{suffix}{labels} (\S+)$"
        found[suffix] = sum(float(value) for value in re.findall(pattern, metrics, re.MULTILINE))
    return found["count"], found["sum"]


def _histogram(metrics: str, name: str, model: BenchModel) -> tuple[float, float]:
    labels = rf'\{{[^}}]*model="{re.escape(model.name)}"[^}}]*version="{model.version}"[^}}]*\}}'
    found = {}
    for suffix in ("count", "sum"):
        match = re.search(rf"^{name}_{suffix}{labels} (\S+)$", metrics, re.MULTILINE)
        found[suffix] = float(match.group(1)) if match else 0.0
    return found["count"], found["sum"]


def scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def gateway_config(listen: int, admin: int, worker: int, max_batch_size: int, max_queue_delay: str) -> str:
    """Routes to one worker: with the batching header through the filter (and through the same
    filter with max_queue_delay 0 for the no-delay header), without it alone."""
    batching = {
        "max_batch_size": max_batch_size,
        "max_queue_delay": max_queue_delay,
        "max_queue_size": 4096,  # above any concurrency measured: queueing, never refusing
        "upstream_binary_tensors": True,
    }
    config = {
        "listen": {"host": "127.0.0.1", "port": listen},
        "admin": {"host": "127.0.0.1", "port": admin},
        "access_log": {"enabled": False},
        "clusters": {"worker": {"protocol": "oip_v2", "endpoints": [f"127.0.0.1:{worker}"]}},
        "routes": [
            {
                "name": "batched",
                "match": {"prefix": "/v2/", "headers": {BATCHED_HEADER[0]: BATCHED_HEADER[1]}},
                "backend": {"cluster": "worker"},
                "filters": [{"batching": batching}],
            },
            {
                "name": "batched-no-delay",
                "match": {"prefix": "/v2/", "headers": {NO_DELAY_HEADER[0]: NO_DELAY_HEADER[1]}},
                "backend": {"cluster": "worker"},
                "filters": [{"batching": {**batching, "max_queue_delay": "0ms"}}],
            },
            {"name": "unbatched", "match": {"prefix": "/v2/"}, "backend": {"cluster": "worker"}},
        ],
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@dataclass(frozen=True, slots=True)
class Stack:
    worker_port: int
    gateway_url: str
    admin_port: int
    workdir: Path


def start_stack(
    stack: contextlib.ExitStack, args: argparse.Namespace, layout: Layout, repository: Path, workdir: Path
) -> Stack:
    worker_port, listen, admin = free_port(), free_port(), free_port()
    served = ",".join(f"{m.name}:{m.version}" for m in args.models)
    worker_argv = [sys.executable, "-m", "inference_workers", "worker", "--model-repository", str(repository)]
    worker_argv += ["--http-port", str(worker_port), "--models", served, "--device", "cpu"]
    worker_argv += ["--log-level", "WARNING", "--exit-with-parent"]
    start_service(
        stack,
        layout.worker(worker_argv),
        workdir / "worker.log",
        lambda: http_status(worker_port, "/v2/health/ready") == 200,
        "the worker",
        READY_TIMEOUT_S,
    )
    turnout = turnout_path()
    if turnout is None:
        raise ChildFailed("the turnout command is not installed (pip install -e .)")
    config_path = workdir / "turnout.yaml"
    config_path.write_text(
        gateway_config(listen, admin, worker_port, args.max_batch_size, args.max_queue_delay)
    )
    ready_path = f"/v2/models/{args.models[0].name}/versions/{args.models[0].version}/ready"
    start_service(
        stack,
        layout.gateway(turnout_argv(turnout, config_path)),
        workdir / "turnout.log",
        lambda: http_status(admin, "/readyz") == 200 and http_status(listen, ready_path) == 200,
        "turnout",
        READY_TIMEOUT_S,
    )
    return Stack(worker_port, f"http://127.0.0.1:{listen}", admin, workdir)


def measure_row(
    stack: Stack, runner: LoadRunner, model: BenchModel, mode: str, concurrency: int, args: argparse.Namespace
) -> Row:
    url = stack.gateway_url + model.infer_path
    stem = f"{model.name}-{mode.replace(', ', '-').replace(' ', '-')}-c{concurrency}"
    if args.warmup > 0:
        runner.run(url, concurrency, args.warmup, stack.workdir / f"{stem}-warmup.log")
    before, gateway_before = scrape(stack.worker_port), scrape(stack.admin_port)
    load = runner.run(url, concurrency, args.duration, stack.workdir / f"{stem}.log")
    after, gateway_after = scrape(stack.worker_port), scrape(stack.admin_port)
    (calls_before, rows_before), (calls_after, rows_after) = (batch_counts(m, model) for m in (before, after))
    calls, rows = calls_after - calls_before, rows_after - rows_before
    seconds = model_seconds(after, model) - model_seconds(before, model)
    (queued_before, waited_before), (queued_after, waited_after) = (
        queue_wait(m, model) for m in (gateway_before, gateway_after)
    )
    queued, waited = queued_after - queued_before, waited_after - waited_before
    return Row(
        mode,
        concurrency,
        load.rps,
        load.p50_ms,
        load.p99_ms,
        load.requests,
        load.errors,
        calls / load.duration_s,
        rows / calls if calls else 0.0,
        seconds / calls * 1000 if calls else 0.0,
        waited / queued * 1000 if queued else 0.0,
    )


def measure_model(
    stack: Stack, runners: dict[str, LoadRunner], model: BenchModel, args: argparse.Namespace
) -> list[Row]:
    """Every row of one model: concurrency 1 in interleaved rounds of its modes, then the others."""
    measured = []
    for concurrency in args.concurrency:
        modes = LONE_MODES if concurrency == 1 else LOADED_MODES
        rounds = args.rounds if concurrency == 1 else 1
        by_mode: dict[str, list[Row]] = {mode: [] for mode in modes}
        for round_index in range(rounds):
            for mode in modes:
                of = f" (round {round_index + 1} of {rounds})" if rounds > 1 else ""
                _progress(f"{model.label} c={concurrency} batching {mode}{of}")
                by_mode[mode].append(measure_row(stack, runners[mode], model, mode, concurrency, args))
        measured += [combine(rows) for rows in by_mode.values()]
    return measured


def make_runners(
    args: argparse.Namespace, layout: Layout, workdir: Path, bodies: list[bytes]
) -> dict[str, LoadRunner]:
    """The load generator per mode: the batched ones add the header that picks their route."""
    headers = {
        "off": (JSON_CONTENT,),
        "on": (JSON_CONTENT, BATCHED_HEADER),
        NO_DELAY_MODE: (JSON_CONTENT, NO_DELAY_HEADER),
        IDLE_MODE: (JSON_CONTENT,),
    }
    pause = pause_ms(args.max_queue_delay)
    if args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk") is not None):
        script = write_wrk_script(workdir / "infer.lua", bodies)
        paused = write_wrk_script(workdir / "infer-paused.lua", bodies, pause)
        return {
            mode: WrkRunner(layout.loadgen, sent, script=paused if mode == IDLE_MODE else script)
            for mode, sent in headers.items()
        }
    cpus = layout.pinning.client_cpus
    return {
        mode: PythonCallers(bodies, sent, cpus, pause / 1000 if mode == IDLE_MODE else 0.0)
        for mode, sent in headers.items()
    }


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer

    repository = args.model_repository or workdir / "models"
    build(repository)
    rows = load_breast_cancer(return_X_y=True)[0].astype(np.float32)
    bodies = request_bodies(rows)
    layout = choose_layout(args.pinning)
    ceilings = {}
    with running_on(layout.worker_cpus):  # the CPU the worker will compute on: like for like
        for model in args.models:
            _progress(f"{model.label}: in-process ceiling at batch {args.max_batch_size}")
            onnx_path = repository / model.name / str(model.version) / "model.onnx"
            ceiling = in_process(onnx_path, rows, args.max_batch_size, args.duration)
            ceilings[model] = ceiling.inferences_per_s
    started = start_stack(stack, args, layout, repository, workdir)
    runners = make_runners(args, layout, workdir, bodies)
    results = []
    for model in args.models:
        measured = measure_model(started, runners, model, args)
        results.append(
            {
                "model": model.label,
                "bound": model.bound,
                "ceiling_rows_per_s": ceilings[model],
                "results": [asdict(r) for r in measured],
            }
        )
    return {
        "cpus": os.cpu_count(),
        "pinning": layout.description,
        "loadgen": runners["off"].name,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds_at_c1": args.rounds,
        "idle_pause_ms": pause_ms(args.max_queue_delay),
        "batcher": {"max_batch_size": args.max_batch_size, "max_queue_delay": args.max_queue_delay},
        "models": results,
    }


def render(report: dict[str, Any]) -> str:
    batcher = report["batcher"]
    lines = [
        f"batching through turnout: load generator {report['loadgen']} (closed loop, keep-alive, one-row "
        f"JSON requests); {report['cpus']} CPUs; pinning: {report['pinning']}",
        f"batching filter: max_batch_size {batcher['max_batch_size']}, max_queue_delay "
        f"{batcher['max_queue_delay']}; each run {report['warmup_s']:g}s warm-up, "
        f"{report['duration_s']:g}s measured; c=1: medians of {report['rounds_at_c1']} interleaved rounds, "
        f"'off, idle' pausing {report['idle_pause_ms']} ms before each request",
    ]
    columns = (
        ("req/s", 9),
        ("p50 ms", 8),
        ("p99 ms", 8),
        ("calls/s", 9),
        ("rows/call", 9),
        ("model ms", 9),
        ("wait ms", 8),
        ("err", 5),
    )
    for model in report["models"]:
        lines += ["", f"{model['model']} ({model['bound']}-bound)"]
        names = " ".join(f"{name:>{width}}" for name, width in columns)
        lines.append(f"{'batching':12} {'conc':>5} {names}")
        for r in model["results"]:
            lines.append(
                f"{r['mode']:12} {r['concurrency']:5d} {r['requests_per_s']:9.0f} {r['p50_ms']:8.2f} "
                f"{r['p99_ms']:8.2f} {r['upstream_calls_per_s']:9.0f} {r['mean_batch_rows']:9.1f} "
                f"{r['model_ms_per_call']:9.3f} {r['wait_ms']:8.3f} {r['errors']:5d}"
            )
        lines.append(
            f"ceiling: onnxruntime in process at batch {batcher['max_batch_size']}: "
            f"{model['ceiling_rows_per_s']:,.0f} rows/s"
        )
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    exit_on_termination()
    stack = contextlib.ExitStack()
    try:
        workdir = Path(tempfile.mkdtemp(prefix="turnout-batching-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)  # registered first, so removed last
        report = run(args, workdir, stack)
    except KeyboardInterrupt:
        _progress("interrupted: stopping every child process")
        return 130
    except (ChildFailed, ValueError, subprocess.SubprocessError) as exc:
        _progress(f"error: {exc}")
        return 1
    finally:
        with interrupts_deferred():
            stack.close()
    print(render(report), flush=True)
    if args.json:
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side-by-side proxy benchmark: one tiny upstream measured direct, through turnout and through nginx.

    python bench/proxy.py [--concurrency 32,128] [--duration 10s] [--warmup 2s]
                          [--targets direct,turnout,nginx] [--loadgen auto|wrk|python]
                          [--upstream auto|nginx|python] [--turnout COMMAND] [--access-log] [--json]
                          [--chain none|typical|cache-hit] [--compare-chain] [--processes 1,2]
                          [--scenario best|deployed]

Every target fronts the same upstream (nginx returning a fixed 2-byte 200 when nginx is installed,
else bench/upstream.py), so the differences between rows are the proxies' own cost. The load is
closed-loop over keep-alive connections (wrk when installed, else bench/_loadgen.py); each run is a
discarded warm-up and then the measured window, and the targets take turns at each concurrency so
slow drifts of a shared machine spread over all of them. With taskset and two CPUs, the proxy under
test runs alone on one CPU and the upstream and load generator share the other. CPU per request is
the user+system time of the proxy's whole process group over the measured window, from /proc.

--chain puts a filter chain on turnout's route (bench/_chains.py says exactly what each one is and
what requests it needs; every target gets the same requests): `typical` is auth_jwt, rate_limit and
a cache that every request misses; `cache-hit` is a cache that answers every request after the
first. --compare-chain also runs turnout with no filters, and prints what the chain costs: CPU
µs/request, p50 and p99 added, and the req/s ratio. Only turnout's row changes with the chain.

--scenario deployed measures turnout as deployed (bench/_scenario.py): POST of OIP v2 JSON bodies
of about 100 bytes and 16 KB in turn, two upstreams round robin, and a JSON access log to a file on
both proxies (nginx's through a 64 KiB buffer flushed every second). It combines with --chain.

--processes 1,2 measures turnout with N gateway processes (`turnout run --processes N`) against
nginx with N workers instead, for each N (bench/_scaling.py says how each N is pinned).

Every child runs in its own process group and is stopped, group and all, on exit, error, Ctrl-C or
SIGTERM. Exit status: 0 when every requested target was measured or deliberately skipped (nginx not
installed), 1 when a target failed, 2 on bad arguments, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from _chains import Chain, build_chain
from _loadgen import PythonLoadgenRunner
from _options import Options, parse_options
from _options import _positive_ints as positive_ints
from _procs import (
    ChildFailed,
    Pinning,
    choose_pinning,
    cpu_accounting_available,
    exit_on_termination,
    group_cpu_seconds,
    interrupts_deferred,
)
from _report import Measured, Outcome, Unavailable, render_tables, summary
from _results import LoadResult
from _scaling import run_scaling
from _scenario import build_scenario, wrk_script
from _targets import Bench, Target, plan_targets, start_target, start_upstreams
from _turnout import data_path_mode
from _wrk import WrkRunner


class LoadRunner(Protocol):
    """A load generator run as a child process: one closed-loop run against one URL."""

    @property
    def name(self) -> str: ...

    def run(self, url: str, connections: int, duration_s: float, log_path: Path) -> LoadResult: ...


def choose_runner(opts: Options, pinning: Pinning, chain: Chain, script: Path | None = None) -> LoadRunner:
    """wrk when asked or installed, else the Python load generator; both send ``chain``'s requests.
    ``script`` (a wrk Lua script) makes the requests instead, with the chain's headers."""
    if script is not None:
        return WrkRunner(pinning.client, chain.headers, script=script)
    if opts.loadgen == "wrk" or (opts.loadgen == "auto" and shutil.which("wrk") is not None):
        return WrkRunner(pinning.client, chain.headers, chain.unique_query)
    return PythonLoadgenRunner(pinning.client, chain.headers, chain.unique_query)


def measure(bench: Bench, target: Target, runner: LoadRunner, concurrency: int) -> Outcome:
    """Warm up, then measure one target at one concurrency, charging the proxy group's CPU time."""
    opts = bench.opts
    stem = f"load-{target.name}-c{concurrency}"
    pgid = target.proc.pid if target.proc is not None and cpu_accounting_available() else None
    try:
        if opts.warmup_s > 0:
            runner.run(target.url, concurrency, opts.warmup_s, bench.workdir / f"{stem}-warmup.log")
        cpu_before = group_cpu_seconds(pgid) if pgid is not None else 0.0
        load = runner.run(target.url, concurrency, opts.duration_s, bench.workdir / f"{stem}.log")
        cpu_after = group_cpu_seconds(pgid) if pgid is not None else 0.0
    except (ChildFailed, ValueError, KeyError) as exc:
        return Unavailable(str(exc), failed=True)
    if target.proc is not None and target.proc.poll() is not None:
        return Unavailable(
            f"{target.name} exited (status {target.proc.returncode}) during the run", failed=True
        )
    cpu_us = (cpu_after - cpu_before) * 1e6 / load.requests if pgid is not None else None
    return Measured(load, cpu_us)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(bench: Bench) -> int:
    """Start everything, measure every target at every concurrency, print; 1 if a target failed."""
    opts = bench.opts
    script = None
    requests = bench.chain.requests
    if bench.scenario.bodies:
        script = bench.workdir / f"{bench.scenario.name}.lua"
        script.write_text(wrk_script(bench.scenario, bench.chain.unique_query))
        requests = bench.scenario.description + (
            ", a query string per request" if bench.chain.unique_query else ""
        )
        requests += "".join(f", with an {name} header" for name, _ in bench.chain.headers)
    runner = choose_runner(opts, bench.pinning, bench.chain, script)
    upstream_port, extra_ports, upstream_description = start_upstreams(bench)
    specs = plan_targets(opts, bench.chain, build_chain("none"))
    started = {spec.label: start_target(bench, spec, upstream_port, extra_ports) for spec in specs}
    for name, target in started.items():
        if isinstance(target, Unavailable):
            _progress(f"{name}: {'failed' if target.failed else 'skipped'}: {target.reason}")

    runs: dict[int, dict[str, Outcome]] = {}
    for concurrency in opts.concurrency:
        per_target: dict[str, Outcome] = {}
        runs[concurrency] = per_target
        for name, target in started.items():
            if isinstance(target, Unavailable):
                per_target[name] = target
                continue
            _progress(f"c={concurrency} {name}: warm-up {opts.warmup_s:g}s, measuring {opts.duration_s:g}s")
            per_target[name] = outcome = measure(bench, target, runner, concurrency)
            if isinstance(outcome, Unavailable):
                _progress(f"c={concurrency} {name}: failed: {outcome.reason}")

    data_path = data_path_mode()
    header = [
        f"proxy benchmark: upstream {upstream_description}; load generator {runner.name} "
        f"(closed loop, keep-alive); proxy access log {'on' if opts.access_log else 'off'}",
        f"pinning: {bench.pinning.description}",
        f"each run: {opts.warmup_s:g}s warm-up (discarded), then {opts.duration_s:g}s measured; "
        "CPU µs/req: the proxy's process group, user+system CPU time / requests",
        f"turnout's filter chain: {bench.chain.name}: {bench.chain.description}",
        f"turnout's data path: {data_path} (turnout-py, when measured: run from source)",
        f"scenario: {bench.scenario.name}",
        f"requests, the same to every target: {requests}",
    ]
    print(render_tables(runs, header), flush=True)
    if opts.json:
        meta = {
            "loadgen": runner.name,
            "upstream": upstream_description,
            "pinning": bench.pinning.description,
            "duration_s": opts.duration_s,
            "warmup_s": opts.warmup_s,
            "access_log": opts.access_log,
            "chain": bench.chain.name,
            "chain_description": bench.chain.description,
            "turnout_data_path": data_path,
            "requests": requests,
            "scenario": bench.scenario.name,
        }
        print(json.dumps(summary(runs, meta)), flush=True)
    failed = any(isinstance(o, Unavailable) and o.failed for per in runs.values() for o in per.values())
    return 1 if failed else 0


def _split_processes(argv: Sequence[str] | None) -> tuple[tuple[int, ...] | None, list[str]]:
    """`--processes 1,2` (see bench/_scaling.py), and the other arguments for parse_options."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--processes", type=positive_ints, default=None)
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    return known.processes, rest


def main(argv: Sequence[str] | None = None) -> int:
    processes, rest = _split_processes(argv)
    opts = parse_options(rest, __doc__)
    if processes is not None and opts.scenario != "best":
        # bench/_scaling.py starts one upstream and sends GET /: it would not measure the scenario.
        _progress("error: --processes measures the best case only; leave out --scenario")
        return 2
    exit_on_termination()
    stack = contextlib.ExitStack()
    try:
        workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)  # registered first, so removed last
        bench = Bench(
            opts, stack, workdir, choose_pinning(), build_chain(opts.chain), build_scenario(opts.scenario)
        )
        if processes is not None:
            return run_scaling(bench, processes, choose_runner, measure)
        return run_benchmark(bench)
    except KeyboardInterrupt:
        _progress("interrupted: stopping every child process")
        return 130
    except ChildFailed as exc:
        _progress(f"error: {exc}")
        return 1
    finally:
        with interrupts_deferred():
            stack.close()


if __name__ == "__main__":
    sys.exit(main())

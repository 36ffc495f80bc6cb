"""Run one load-test scenario headless and print its summary: `python -m loadtests.run --scenario ab`.

1. The demo stack is used when its admin listener answers /readyz; otherwise (for the demo's own
   addresses) `python -m gateway.demo` is started and stopped again at the end.
2. Locust runs headless in a child process for the given duration (it stops by itself; a hard
   deadline backs that up), writing CSV statistics, an HTML report, its log and the locustfile's
   traffic report (JSON) under the results directory as `<scenario>-<timestamp>*`.
3. The batcher's metrics are scraped before and after, and everything is merged into the summary,
   printed and saved as `<scenario>-<timestamp>-summary.txt`.
Exit status: 0 when the run passed, 1 when it ran but found problems (failed requests, sticky
violations, 429s without Retry-After) or Locust did not run, 2 for bad usage or no stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from loadtests.arguments import RunOptions, parse_options
from loadtests.batch_metrics import BatchTotals, scrape_batch_totals
from loadtests.demo_stack import ROOT, DemoStack, StackUnavailable, demo_launcher
from loadtests.locust_csv import read_stats_csv
from loadtests.scenarios import SCENARIOS
from loadtests.summary import RunSummary, problems, summary_lines
from loadtests.traffic_report import TrafficReport

# Users finishing their current request at the end of the run get this long before being killed.
STOP_TIMEOUT_S = 5
# Beyond the run itself: Locust's start-up (imports, dataset load) and its reports at the end.
LOCUST_OVERHEAD_S = 60
# Where the demo writes its access log (see gateway/demo.py and config/examples/demo.yaml).
ACCESS_LOG_VARIABLE = "TURNOUT_ACCESS_LOG"
# Lines of Locust's log shown when it did not produce statistics.
LOG_TAIL_LINES = 40


def _locust_command(options: RunOptions, locustfile: Path, prefix: Path, traffic_path: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--users",
        str(options.users),
        "--spawn-rate",
        f"{options.spawn_rate:g}",
        "--run-time",
        f"{options.duration_s}s",
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        "--host",
        options.host,
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--only-summary",
        "--turnout-stats",
        str(traffic_path),
    ]
    if options.scenario == "grpc":
        command += ["--grpc-target", options.grpc_target]
    return [*command, *options.locust_args]


def run_locust(command: list[str], log_path: Path, deadline_s: float) -> int:
    """Locust's exit status; it is killed if it outlives `deadline_s` (or the runner is interrupted)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        return process.wait(deadline_s)
    except subprocess.TimeoutExpired:
        print(f"locust still running after {deadline_s:.0f}s: killed", file=sys.stderr)
        return -1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception, so that the demo stack and Locust are stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    scenario = SCENARIOS[options.scenario]
    results = options.results_dir.resolve()
    results.mkdir(parents=True, exist_ok=True)
    prefix = results / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    traffic_path = prefix.with_name(f"{prefix.name}-traffic.json")
    locust_log = prefix.with_name(f"{prefix.name}-locust.log")
    target = options.grpc_target if scenario.name == "grpc" else options.host
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    before: BatchTotals | None = None
    after: BatchTotals | None = None
    try:
        launcher = demo_launcher(options.host, options.admin, options.start_demo)
        # A demo started for the run keeps its access log with the run's files (how each request was
        # routed, during this run only) instead of growing the demo's own log.
        access_log = {ACCESS_LOG_VARIABLE: str(prefix.with_name(f"{prefix.name}-access.log"))}
        demo_log = prefix.with_name(f"{prefix.name}-demo.log")
        with DemoStack(options.admin, demo_log, launcher, access_log) as stack:
            if stack.started:
                print(
                    f"started the demo stack for this run (logs: {prefix.name}-demo.log, -access.log)",
                    flush=True,
                )
            before = scrape_batch_totals(options.admin, options.admin_token)
            print(
                f"running {scenario.name} ({scenario.purpose}): {options.users} users, "
                f"{options.duration_s}s against {target} ...",
                flush=True,
            )
            command = _locust_command(options, scenario.locustfile, prefix, traffic_path)
            status = run_locust(command, locust_log, options.duration_s + STOP_TIMEOUT_S + LOCUST_OVERHEAD_S)
            after = scrape_batch_totals(options.admin, options.admin_token)
    except StackUnavailable as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    try:
        stats = read_stats_csv(prefix)
    except (OSError, ValueError) as exc:
        print(f"loadtest: Locust produced no statistics (status {status}, {exc}):\n{_tail(locust_log)}")
        return 1
    summary = RunSummary(
        scenario=scenario.name,
        users=options.users,
        duration_s=options.duration_s,
        target=target,
        stats=stats,
        traffic=TrafficReport.read(traffic_path) if traffic_path.exists() else None,
        batching=after - before if before is not None and after is not None else None,
        locust_status=status,
    )
    lines = summary_lines(summary)
    found = problems(summary)
    lines.append("result: " + ("PASS" if not found else "FAIL: " + "; ".join(found)))
    lines.append(f"files: {prefix}* (CSV, HTML report, locust log, traffic report, this summary)")
    text = "\n".join(lines)
    print(text)
    prefix.with_name(f"{prefix.name}-summary.txt").write_text(text + "\n")
    return 0 if not found else 1


if __name__ == "__main__":
    sys.exit(main())

"""How long a gateway takes from spawn to its first answered request, and what its start imports.

    python bench/start_time.py [--rounds 5] [--compare OTHER_TREE] [--config FILE] [--json]

Each round spawns `python -m gateway.cli run --config FILE` (the quickstart by default, on free
ports) and polls the listener until any HTTP answer comes back: a 502 or 503 from an upstream that
is not running counts, since the question is when the gateway serves, not whether its upstreams do.
With `--compare`, rounds alternate between this tree and the other one (each from source, by
PYTHONPATH), so both see the same machine load. Prints the median start time of each tree and the
CPU seconds the gateway spent getting there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _procs import free_port, http_status, stop_group  # noqa: E402 - after the path is set

QUICKSTART = ROOT / "config" / "examples" / "quickstart.yaml"
# Deadline for one start: a loaded 2-core machine starts a gateway in a few seconds.
START_DEADLINE_S = 60.0
# Poll interval: short against a start of seconds, long enough not to steal the child's CPU.
POLL_S = 0.01


def _config(source: Path, directory: Path) -> tuple[Path, int]:
    """`source` with its listener and admin API moved to free ports; the file and the listen port.

    Edited as text, not loaded and dumped: a YAML 1.1 dumper would write a retry's `on:` key back
    as `true:`."""
    ports = {"listen": free_port(), "admin": free_port()}
    section = ""
    lines = []
    for line in source.read_text().splitlines():
        if line[:1].isalpha():
            section = line.split(":", 1)[0]
        if section in ports and line.strip().startswith("port:"):
            line = f"{line[: line.index('port:')]}port: {ports[section]}"
        lines.append(line)
    path = directory / f"start-{ports['listen']}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, ports["listen"]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_once(tree: Path, source: Path, directory: Path) -> tuple[float, float]:
    """Seconds from spawn to the first answer, and the CPU seconds the gateway used until then
    (measured after it is stopped, so it includes a little shutdown)."""
    path, port = _config(source, directory)
    # From source by default, so that a tree without a compiled data path compares fairly.
    pure = os.environ.get("TURNOUT_PURE_PYTHON", "1")
    env = {**os.environ, "PYTHONPATH": str(tree), "TURNOUT_PURE_PYTHON": pure}
    cpu_before = _children_cpu_s()
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(path)],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while http_status(port, "/") is None:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway from {tree} exited with status {proc.returncode}")
            if time.monotonic() - began > START_DEADLINE_S:
                raise RuntimeError(f"gateway from {tree} did not answer in {START_DEADLINE_S:g}s")
            time.sleep(POLL_S)
        elapsed = time.monotonic() - began
    finally:
        stop_group(proc)
    return elapsed, _children_cpu_s() - cpu_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout to run alternately")
    parser.add_argument("--config", type=Path, default=QUICKSTART)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    results: dict[str, dict[str, list[float]]] = {str(t): {"start_s": [], "cpu_s": []} for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for tree in trees:
                elapsed, cpu = start_once(tree, args.config, Path(tmp))
                results[str(tree)]["start_s"].append(elapsed)
                results[str(tree)]["cpu_s"].append(cpu)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"load average {os.getloadavg()[0]:.2f}, {args.rounds} rounds")
    for tree, numbers in results.items():
        starts = " ".join(f"{s:.2f}" for s in numbers["start_s"])
        print(
            f"{tree}: median start {statistics.median(numbers['start_s']):.2f}s "
            f"(cpu {statistics.median(numbers['cpu_s']):.2f}s) [{starts}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmarks `make bench` runs, each a child script whose ``--json`` output is collected.

Every section is one command, run from the repository root with this Python, in its own process
group (stopped, group and all, on timeout or Ctrl-C). Its stderr is echoed live, prefixed with the
section's name, and its last lines are kept to explain a failure; its stdout ends with one JSON
document (a single line from proxy.py, an indented object from the others), which is what is kept.
"""

from __future__ import annotations

import collections
import json
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from _procs import spawn_in_group, stop_group

ROOT = Path(__file__).resolve().parents[1]
# A section far past this is stuck, not slow: the longest full section (proxy: 3 targets x 2
# concurrencies x 12 s, plus start-ups) takes under two minutes.
SECTION_TIMEOUT_S = 900.0
# Lines of a failed section's stderr kept for the report: enough for a traceback's end.
STDERR_TAIL_LINES = 20

# Shorter runs for --quick: a smoke run that still exercises every path, not figures to quote.
_QUICK_PROXY = ("--duration", "2s", "--warmup", "1s")


@dataclass(frozen=True, slots=True)
class Section:
    """One benchmark: the script under bench/ and its arguments, full and for --quick."""

    name: str
    title: str
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]

    def argv(self, quick: bool) -> list[str]:
        """The command, relative to the repository root, without the interpreter."""
        return [f"bench/{self.script}", *self.args, *(self.quick_args if quick else ()), "--json"]


SECTIONS: tuple[Section, ...] = (
    # As deployed first (POST bodies, two upstreams, access logs on both proxies), the best case after.
    Section(
        "deployed",
        "As deployed: POST of OIP v2 bodies, two upstreams, access logs: turnout vs nginx",
        "proxy.py",
        ("--scenario", "deployed", "--concurrency", "32", "--targets", "direct,turnout,nginx"),
        _QUICK_PROXY,
    ),
    Section(
        "deployed-chain",
        "As deployed, with the typical chain: turnout with no filters and with it, vs nginx",
        "proxy.py",
        (
            "--scenario",
            "deployed",
            "--compare-chain",
            "--chain",
            "typical",
            "--targets",
            "turnout,nginx",
            "--concurrency",
            "32",
        ),
        _QUICK_PROXY,
    ),
    Section(
        "filters",
        "CPU µs per request of each filter of the typical chain and of the access log, in process",
        "filter_cost.py",
        (),
        ("--requests", "640", "--rounds", "3"),
    ),
    Section(
        "proxy",
        "Proxy: direct vs turnout vs nginx",
        "proxy.py",
        ("--concurrency", "32,128", "--targets", "direct,turnout,turnout-py,nginx"),
        _QUICK_PROXY,
    ),
    Section(
        "hotpath",
        "The data path's Python-side cost per request, sockets taken out: compiled vs from source",
        "hotpath.py",
        (),
        ("--requests", "1000", "--rounds", "3"),
    ),
    Section(
        "chain",
        "Filter-chain overhead: turnout with no filters vs the typical chain",
        "proxy.py",
        ("--compare-chain", "--chain", "typical", "--targets", "turnout", "--concurrency", "32"),
        _QUICK_PROXY,
    ),
    Section(
        "cache",
        "Cache hits: the same request through turnout, uncached vs answered from the cache",
        "proxy.py",
        ("--compare-chain", "--chain", "cache-hit", "--targets", "turnout", "--concurrency", "1,32"),
        _QUICK_PROXY,
    ),
    Section(
        "batching",
        "Dynamic batching through turnout: off vs on vs the in-process ceiling",
        "batching.py",
        (),
        ("--duration", "1s", "--warmup", "0.5s", "--concurrency", "1,64"),
    ),
    Section("worker", "Inference worker throughput", "worker.py", (), ("--duration", "1")),
    Section(
        "limiter",
        "Rate-limit decisions per second",
        "limiter.py",
        (),
        ("--duration", "0.5s", "--concurrency", "1,16"),
    ),
)
SECTION_NAMES = tuple(section.name for section in SECTIONS)


def last_json_document(text: str) -> Any:
    """The JSON document that ends ``text``: from the last line starting with '{' to the end."""
    lines = text.rstrip().splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith("{"):
            return json.loads("\n".join(lines[start:]))
    raise ValueError("no JSON document in the output")


def _echo(stream: IO[bytes], name: str, tail: collections.deque[str]) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        print(f"  [{name}] {line}", file=sys.stderr, flush=True)


def run_section(
    section: Section, quick: bool, timeout_s: float = SECTION_TIMEOUT_S, root: Path = ROOT
) -> dict[str, Any]:
    """Run one section from ``root``; returns its command, its wall time, and its ``result`` and/or
    its ``error``."""
    argv = section.argv(quick)
    record: dict[str, Any] = {"command": shlex.join(["python", *argv])}
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    started = time.monotonic()
    with tempfile.TemporaryFile() as stdout:
        proc = spawn_in_group([sys.executable, *argv], stdout, subprocess.PIPE, cwd=root)
        assert proc.stderr is not None
        echo = threading.Thread(target=_echo, args=(proc.stderr, section.name, tail), daemon=True)
        echo.start()
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_group(proc)  # also on Ctrl-C: the section's children go with it
            echo.join()
            proc.stderr.close()
        record["seconds"] = round(time.monotonic() - started, 1)
        stdout.seek(0)
        output = stdout.read().decode(errors="replace")
    # A section that failed part-way (proxy.py when one target failed) may still have printed its
    # result, whose rows say what failed: keep both.
    missing: str | None = None
    try:
        record["result"] = last_json_document(output)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        missing = f"printed no JSON result ({exc})"
    if code is None:
        record["error"] = f"ran past {timeout_s:g}s and was stopped"
    elif code != 0:
        record["error"] = _failure(f"exited with status {code}", tail)
    elif missing is not None:
        record["error"] = _failure(missing, tail)
    return record


def _failure(what: str, tail: Sequence[str]) -> str:
    lines = [line for line in tail if line.strip()]
    return f"{what}: {lines[-1].strip()}" if lines else what

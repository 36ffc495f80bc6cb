"""What machine the benchmarks ran on: CPUs, memory, kernel, and the versions of the tools measured.

Everything is read from /proc and from the tools' own version flags; what cannot be read is said to
be unknown or not installed rather than guessed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

# A version flag answers at once; this only bounds a tool that hangs.
VERSION_TIMEOUT_S = 10.0
_KIB_PER_GIB = 1024 * 1024

UNKNOWN = "unknown"
NOT_INSTALLED = "not installed"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` of /proc/cpuinfo (what ``lscpu`` shows as Model name)."""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else UNKNOWN


def memory_total(meminfo: str) -> str:
    """MemTotal of /proc/meminfo, in GiB."""
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return f"{int(match.group(1)) / _KIB_PER_GIB:.1f} GiB" if match else UNKNOWN


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was besides the benchmark."""
    fields = _read("/proc/loadavg").split()
    return " ".join(fields[:3]) if len(fields) >= 3 else UNKNOWN


def _tool_version(argv: list[str], pattern: str) -> str:
    if shutil.which(argv[0]) is None:
        return NOT_INSTALLED
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    match = re.search(pattern, completed.stdout + completed.stderr)
    return match.group(1) if match else UNKNOWN


def describe_machine() -> dict[str, str]:
    """The machine description RESULTS.md opens with, as ordered label -> value pairs."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPUs (nproc)": f"{usable} usable of {os.cpu_count()}",
        "CPU model": cpu_model(_read("/proc/cpuinfo")),
        "Memory": memory_total(_read("/proc/meminfo")),
        "Kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "nginx": _tool_version(["nginx", "-v"], r"nginx/(\S+)"),
        # `wrk -v` prints e.g. "wrk 4.1.0 [epoll] ..." (or "wrk debian/4.1.0-3 [epoll]" from Debian).
        "wrk": _tool_version(["wrk", "-v"], r"wrk (\S+)"),
        "redis-server": _tool_version(["redis-server", "--version"], r"v=(\S+)"),
        "taskset": "available" if shutil.which("taskset") else NOT_INSTALLED,
    }

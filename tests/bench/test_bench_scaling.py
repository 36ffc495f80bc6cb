"""bench/proxy.py --processes: the option, the pinning per process count, and the ratios printed."""

from __future__ import annotations

import os
import shutil

import pytest
from _report import Measured, Unavailable
from _results import LoadResult
from _scaling import pinning_for, ratios
from proxy import _split_processes


def test_processes_is_taken_before_the_other_options() -> None:
    assert _split_processes(["--processes", "1,2", "--duration", "1s"]) == ((1, 2), ["--duration", "1s"])
    assert _split_processes(["--duration", "1s"]) == (None, ["--duration", "1s"])
    with pytest.raises(SystemExit):
        _split_processes(["--processes", "0"])


@pytest.mark.skipif(
    shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2, reason="needs taskset and 2 CPUs"
)
def test_the_proxy_gets_n_cpus_and_the_client_the_rest_or_shares_the_last() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    one = pinning_for(1)
    assert one.proxy_cpus == str(cpus[0]) and one.client_cpus == ",".join(map(str, cpus[1:]))
    every = pinning_for(len(cpus))
    assert every.proxy_cpus == ",".join(map(str, cpus)) and every.client_cpus == str(cpus[-1])
    assert "shared with the proxy" in every.description


def _measured(rps: float, p99_ms: float) -> Measured:
    return Measured(
        LoadResult(requests=int(rps), errors=0, duration_s=1.0, p50_ms=p99_ms / 2, p99_ms=p99_ms), None
    )


def test_ratios_compare_two_processes_with_one_and_with_nginx() -> None:
    runs = {
        64: {
            "turnout x1": _measured(1000, 10),
            "nginx x1": _measured(2000, 5),
            "turnout x2": _measured(1700, 12),
            "nginx x2": _measured(3000, 6),
        },
        128: {"turnout x1": Unavailable("down", failed=True), "turnout x2": _measured(1, 1)},
    }
    assert ratios(runs, (1, 2)) == [
        "c=64: turnout x2 / turnout x1 req/s = 1.70",
        "c=64: turnout x2 / nginx x2 req/s = 0.57; p99 12.00 ms vs 6.00 ms (2.00x)",
    ]

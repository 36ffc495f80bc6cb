"""Rate-limiter decisions per second: the in-process backend, and Redis at several concurrencies.

    python bench/limiter.py [--duration 2s] [--concurrency 1,16,64] [--limits 1,3]
                            [--callers 1000] [--redis-url redis://127.0.0.1:6379/0] [--json]

Each case drives the rate-limit filter's request phase directly (no HTTP), as many decisions as it
can for `--duration`, spread over `--callers` principals with a limit of 100/s each, so the runs
mix admitted and limited decisions the way a busy route does. The memory backend is measured on one
coroutine (it never awaits); the Redis backend with `--concurrency` coroutines sharing one filter,
as concurrent requests of one gateway process would. Latency is per decision, wall clock.

Without `--redis-url` a private redis-server is started on a free loopback port and stopped at the
end (never the machine's 6379). Exit status: 0 on success, 1 when Redis cannot be reached, 2 on
bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core.config_types import parse_duration  # noqa: E402
from gateway.core.context import Principal, RequestContext  # noqa: E402
from gateway.core.filters import BuildContext, Filter  # noqa: E402
from plugins.rate_limit import FACTORY, RateLimitConfig  # noqa: E402

# Per-caller limit: at the rates measured here a caller is refused part of the time.
PER_CALLER_RATE = "100/s"
# Extra limits (for --limits above 1) are wide, so they are consulted on every decision but rarely refuse.
EXTRA_LIMITS = (
    {"key": "tenant", "rate": "1000000/s", "name": "tenant"},
    {"key": "route", "rate": "1000000/s"},
)
# Redis is ready within milliseconds; 10 s covers a loaded machine.
REDIS_START_TIMEOUT_S = 10.0
# A wide budget: this measures throughput, and a decision that fell back would not measure Redis.
BENCH_REDIS_TIMEOUT = "1s"


@dataclass(frozen=True, slots=True)
class CaseResult:
    backend: str
    limits: int
    concurrency: int
    decisions: int
    seconds: float
    admitted_fraction: float
    p50_us: float
    p99_us: float

    @property
    def per_second(self) -> float:
        return self.decisions / self.seconds


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=_duration, default=2.0, help="measured time per case (2s)")
    parser.add_argument(
        "--concurrency", type=_positive_ints, default=(1, 16, 64), help="Redis cases (1,16,64)"
    )
    parser.add_argument(
        "--limits", type=_positive_ints, default=(1, 3), help="limits per route, 1 to 3 (1,3)"
    )
    parser.add_argument("--callers", type=int, default=1000, help="distinct principals (1000)")
    parser.add_argument("--redis-url", help="an existing Redis; default: start a private redis-server")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args(argv)
    if max(options.limits) > 1 + len(EXTRA_LIMITS):
        parser.error(f"--limits goes up to {1 + len(EXTRA_LIMITS)}")
    if options.callers < 1:
        parser.error("--callers must be at least 1")
    return options


def _limiter(limits: int, backend: str, redis_url: str | None) -> Filter:
    config = RateLimitConfig.model_validate(
        {
            "limits": [{"key": "principal", "rate": PER_CALLER_RATE}, *EXTRA_LIMITS[: limits - 1]],
            "backend": backend,
            "redis_timeout": BENCH_REDIS_TIMEOUT,
            "on_redis_failure": "fail_closed",
        }
    )
    return FACTORY(config, BuildContext("bench", "bench", None, redis_url=redis_url))


def _contexts(callers: int) -> list[RequestContext]:
    contexts = []
    for index in range(callers):
        principal = Principal(f"caller-{index}", tenant=f"tenant-{index % 10}")
        ctx = RequestContext("POST", "/v2/models/m/infer", "", {}, "10.0.0.1", 0.0, principal=principal)
        ctx.route, ctx.model = "bench", "m"
        contexts.append(ctx)
    return contexts


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _result(
    backend: str, limits: int, concurrency: int, latencies: list[float], admitted: int, seconds: float
) -> CaseResult:
    latencies.sort()
    count = len(latencies)
    return CaseResult(
        backend,
        limits,
        concurrency,
        count,
        seconds,
        admitted / count if count else 0.0,
        _percentile(latencies, 0.50) * 1e6,
        _percentile(latencies, 0.99) * 1e6,
    )


def run_memory(limits: int, callers: int, duration: float) -> CaseResult:
    limiter = _limiter(limits, "memory", None)
    contexts = _contexts(callers)
    latencies: list[float] = []
    admitted = 0
    clock = time.perf_counter
    began = clock()
    deadline = began + duration
    index = 0
    while True:
        start = clock()
        if start >= deadline:
            break
        ctx = contexts[index % callers]
        ctx.state.clear()
        if limiter.on_request(ctx) is None:
            admitted += 1
        latencies.append(clock() - start)
        index += 1
    return _result("memory", limits, 1, latencies, admitted, clock() - began)


async def run_redis(
    limits: int, callers: int, duration: float, concurrency: int, redis_url: str
) -> CaseResult:
    limiter = _limiter(limits, "redis", redis_url)
    await limiter.start()
    latencies: list[float] = []
    admitted = 0
    try:
        clock = time.perf_counter
        deadline = clock() + duration

        async def worker(offset: int) -> None:
            nonlocal admitted
            contexts = _contexts(callers)
            index = offset
            while clock() < deadline:
                ctx = contexts[index % callers]
                ctx.state.clear()
                start = clock()
                if await cast(Awaitable[Any], limiter.on_request(ctx)) is None:
                    admitted += 1
                latencies.append(clock() - start)
                index += concurrency

        began = clock()
        await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
        seconds = clock() - began
    finally:
        await limiter.stop()
    return _result("redis", limits, concurrency, latencies, admitted, seconds)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free loopback port, stopped on exit."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed; pass --redis-url")
    port = _free_port()
    argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not _pings(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


def _table(results: list[CaseResult]) -> str:
    header = (
        f"{'backend':<8} {'limits':>6} {'conc':>5} {'decisions/s':>12} {'p50 µs':>8} {'p99 µs':>8} "
        f"{'admitted':>9}"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        rows.append(
            f"{r.backend:<8} {r.limits:>6} {r.concurrency:>5} {r.per_second:>12,.0f} {r.p50_us:>8.1f} "
            f"{r.p99_us:>8.1f} {r.admitted_fraction:>9.0%}"
        )
    return "\n".join(rows)


def _event_loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(argv)
    loop_name = _event_loop_name()  # the gateway runs on uvloop where installed; so does the bench
    results = [run_memory(limits, options.callers, options.duration) for limits in options.limits]
    try:
        with contextlib.ExitStack() as stack:
            url = options.redis_url or stack.enter_context(private_redis())
            for limits in options.limits:
                for concurrency in options.concurrency:
                    results.append(
                        asyncio.run(run_redis(limits, options.callers, options.duration, concurrency, url))
                    )
    except (RuntimeError, OSError) as exc:
        print(f"limiter bench: {exc}", file=sys.stderr)
        return 1
    if options.json:
        payload = {
            "event_loop": loop_name,
            "duration_s": options.duration,
            "callers": options.callers,
            "results": [{**asdict(r), "per_second": r.per_second} for r in results],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(f"rate-limit decisions ({loop_name}, {options.callers} callers at {PER_CALLER_RATE} each)")
        print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

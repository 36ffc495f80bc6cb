"""Active health checking: a GET to each endpoint on its own jittered schedule.

An endpoint is healthy when it answers an expected status and its body is empty, not JSON, or JSON
without `"ready": false`, which accepts both the empty-200 style (Triton, KServe) and the
`{"ready": true}` style. Refused connections and timeouts are failures. State flips only after
`unhealthy_threshold` failures or `healthy_threshold` successes in a row, so one lost packet does not
take an endpoint out; a flip refreshes the endpoint set, and a returning endpoint starts slow start.

The checker owns one aiohttp session, opened in `start` and closed in `stop`, and follows the set's
membership (DNS discovery, admin changes) by comparing its version once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint

# OIP v2's readiness path, served by Triton, KServe and our own workers.
DEFAULT_PATH = "/v2/health/ready"
# Every 2 s, +-10%: an endpoint that dies is out within about two intervals (unhealthy threshold 2),
# and the jitter keeps the checks of many gateways from arriving in lock step.
DEFAULT_INTERVAL_S = 2.0
DEFAULT_JITTER = 0.1
# A readiness answer is cheap; one that takes over a second means the endpoint is in trouble.
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_UNHEALTHY_THRESHOLD = 2
DEFAULT_HEALTHY_THRESHOLD = 1
# A readiness body is a few bytes; reading at most 64 KiB bounds what a misbehaving endpoint costs.
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CheckResult:
    at: float
    """time.monotonic() when the check finished."""
    healthy: bool
    status: int | None
    latency_s: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "status": self.status,
            "latency_ms": self.latency_s * 1000.0,
            "error": self.error,
            "age_s": time.monotonic() - self.at,
        }


def body_says_ready(body: bytes) -> bool:
    """Empty, not JSON, or JSON without `"ready": false`."""
    if not body.strip():
        return True
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    return not (isinstance(document, dict) and document.get("ready") is False)


class HttpHealthChecker:
    def __init__(
        self,
        endpoint_set: EndpointSet,
        path: str = DEFAULT_PATH,
        interval: float = DEFAULT_INTERVAL_S,
        jitter: float = DEFAULT_JITTER,
        timeout: float = DEFAULT_TIMEOUT_S,
        unhealthy_threshold: int = DEFAULT_UNHEALTHY_THRESHOLD,
        healthy_threshold: int = DEFAULT_HEALTHY_THRESHOLD,
        expected_statuses: Iterable[int] = (200,),
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or timeout <= 0 or not 0 <= jitter < 1:
            raise ValueError("interval and timeout must be above zero and jitter within [0, 1)")
        if unhealthy_threshold < 1 or healthy_threshold < 1:
            raise ValueError("health thresholds must be at least 1")
        if not path.startswith("/"):
            raise ValueError(f"a health check path starts with '/', got {path!r}")
        self._set = endpoint_set
        self._path = path
        self._interval = interval
        self._jitter = jitter
        self._timeout = timeout
        self._unhealthy_threshold = unhealthy_threshold
        self._healthy_threshold = healthy_threshold
        self._expected = frozenset(expected_statuses)
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[Endpoint, asyncio.Task[None]] = {}
        self._streaks: dict[Endpoint, int] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._seen_version = -1
        self._retired: set[asyncio.Task[None]] = set()
        """Checks of departed endpoints, cancelled but perhaps not yet finished; stop() awaits them."""
        self.last_check: dict[str, CheckResult] = {}
        """The latest result per endpoint address, for the admin API."""
        self.checks = 0
        self.failed_checks = 0

    async def start(self) -> None:
        if self._session is not None:
            raise RuntimeError("health checker already started")
        # A fresh connection per check also proves the endpoint still accepts connections; no pool
        # limit, since each endpoint has at most one check in flight.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"user-agent": "turnout-health-check"},
        )
        self._follow_membership()
        self._watcher = asyncio.create_task(self._watch_membership(), name=f"health-watch:{self._set.name}")

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self._retired]
        if self._watcher is not None:
            tasks.append(self._watcher)
        self._tasks.clear()
        self._watcher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> HttpHealthChecker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {address: result.as_dict() for address, result in self.last_check.items()}

    async def _watch_membership(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._set.version != self._seen_version:
                self._follow_membership()

    def _follow_membership(self) -> None:
        self._seen_version = self._set.version
        members = self._set.endpoints
        current = set(members)
        for endpoint in [ep for ep in self._tasks if ep not in current]:
            task = self._tasks.pop(endpoint)
            task.cancel()
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
            self._streaks.pop(endpoint, None)
            if self._set.get(endpoint.address) is None:
                self.last_check.pop(endpoint.address, None)
        for endpoint in members:
            if endpoint not in self._tasks:
                self._tasks[endpoint] = asyncio.create_task(
                    self._check_forever(endpoint), name=f"health:{self._set.name}:{endpoint.address}"
                )

    async def _check_forever(self, endpoint: Endpoint) -> None:
        # The first check comes soon, spread over a fraction of the interval so that a large set does
        # not check every endpoint in the same instant.
        await asyncio.sleep(self._rng.uniform(0.0, self._interval * self._jitter))
        while True:
            self.record(endpoint, await self.check(endpoint))
            spread = self._rng.uniform(-self._jitter, self._jitter)
            await asyncio.sleep(self._interval * (1.0 + spread))

    async def check(self, endpoint: Endpoint) -> CheckResult:
        """One check of one endpoint, now."""
        session = self._session
        if session is None:
            raise RuntimeError("health checker not started")
        started = self._clock()
        try:
            async with session.get(f"http://{endpoint.address}{self._path}", allow_redirects=False) as resp:
                body = await _read_bounded(resp.content, MAX_BODY_BYTES)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            now = self._clock()
            reason = type(exc).__name__ if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            return CheckResult(at=now, healthy=False, status=None, latency_s=now - started, error=reason)
        now = self._clock()
        healthy = status in self._expected and body_says_ready(body)
        return CheckResult(at=now, healthy=healthy, status=status, latency_s=now - started)

    def record(self, endpoint: Endpoint, result: CheckResult) -> None:
        """Count a result towards the thresholds and flip the endpoint when one is reached."""
        self.checks += 1
        self.last_check[endpoint.address] = result
        streak = self._streaks.get(endpoint, 0)
        if result.healthy:
            streak = streak + 1 if streak > 0 else 1
        else:
            self.failed_checks += 1
            streak = streak - 1 if streak < 0 else -1
        self._streaks[endpoint] = streak
        if endpoint.active_healthy and -streak >= self._unhealthy_threshold:
            self._set.set_active_health(endpoint, False)
        elif not endpoint.active_healthy and streak >= self._healthy_threshold:
            self._set.set_active_health(endpoint, True)


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)

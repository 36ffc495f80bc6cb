"""The load LLM servers report in their Prometheus metrics, read for the `least_load` balancer.

vLLM, TGI and SGLang publish how many requests wait in their queue and how full their KV cache is.
Every `interval` the scraper reads each endpoint's metrics page (all endpoints at once, each
bounded by the interval) and sets `Endpoint.queue_depth` to

    waiting requests + round(kv_weight * KV-cache use (0..1))

which the power-of-two-choices selector of `least_queue` compares (`routing/balancers/least_queue.py`,
adding the gateway's own in-flight count). An endpoint whose page cannot be read, or names none of
the metrics, gets `queue_depth = None`, and the selector falls back to in-flight counts: least
request. A full KV cache weighs as `kv_weight` waiting requests: the server then preempts or
queues, so new work on it waits about as long as behind that many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import aiohttp

from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint

log = logging.getLogger("turnout.load_scraper")


def read_load(
    text: str, queue_metrics: frozenset[str], kv_metrics: frozenset[str]
) -> tuple[float, float] | None:
    """(waiting requests, KV-cache use) summed over label sets (one server may label by model), or
    None when the page names neither."""
    waiting = kv = 0.0
    found = False
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        if brace >= 0:
            name = line[:brace]
            rest = line[line.find("}", brace) + 1 :]
        else:
            name, _, rest = line.partition(" ")
        in_queue = name in queue_metrics
        if not in_queue and name not in kv_metrics:
            continue
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        found = True
        if in_queue:
            waiting += value
        else:
            kv = max(kv, value)
    return (waiting, kv) if found else None


class LoadScraper:
    """A cluster's background task: each endpoint's reported load, every `interval` seconds."""

    def __init__(
        self,
        endpoint_set: EndpointSet,
        path: str,
        interval: float,
        queue_metrics: Iterable[str],
        kv_metrics: Iterable[str],
        kv_weight: float,
    ) -> None:
        if interval <= 0 or not path.startswith("/"):
            raise ValueError("the scrape interval is above zero and the path starts with '/'")
        self._set = endpoint_set
        self._path = path
        self._interval = interval
        self._queue = frozenset(queue_metrics)
        self._kv = frozenset(kv_metrics)
        self._kv_weight = kv_weight
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self.scrapes = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._interval),
            headers={"user-agent": "turnout-load-scraper"},
        )
        self._task = asyncio.create_task(self._run(), name=f"load-scraper:{self._set.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _run(self) -> None:
        while True:
            endpoints = list(self._set.endpoints)
            await asyncio.gather(*(self._scrape(endpoint) for endpoint in endpoints))
            self.scrapes += 1
            await asyncio.sleep(self._interval)

    async def _scrape(self, endpoint: Endpoint) -> None:
        session = self._session
        assert session is not None
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        url = f"http://{host}:{endpoint.port}{self._path}"
        try:
            async with session.get(url) as answer:
                text = await answer.text() if answer.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
            text = ""
        load = read_load(text, self._queue, self._kv) if text else None
        if load is None:
            endpoint.queue_depth = None  # unknown: least request decides
            return
        waiting, kv = load
        endpoint.queue_depth = round(waiting + self._kv_weight * min(max(kv, 0.0), 1.0))

"""A provider's public keys fetched from its JWKS URL and kept fresh without downtime.

Keys are fetched when the filter starts, again every `refresh_interval` in one background task,
and on demand when a token names a key id the set does not hold (the provider rotated its keys).
A fetch that fails, or returns no usable key, keeps the previous set: old keys stay valid until a
new set arrives that no longer contains them, so an identity provider's outage or a rotation never
refuses good tokens.

Unknown key ids are attacker-controlled, so on-demand fetches are rate limited: at most one fetch
per `min_refresh_interval`, counted from the previous attempt of any kind; a token with an unknown
kid inside that window is refused without a fetch. Concurrent requests that need a fetch share the
one in flight instead of each starting their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp
import orjson
from prometheus_client import Counter

from plugins.auth_jwt.keys import SigningKeys

log = logging.getLogger("turnout.auth_jwt")

# A JWKS holds a handful of keys (a few KiB); anything near this size is not a key set, and reading
# it whole into memory on an attacker-influenced URL must stay bounded.
_MAX_JWKS_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024  # read size while enforcing the limit above


class JwksKeySet:
    """The keys of one JWKS URL; `start` fetches them and starts the background refresh."""

    __slots__ = (
        "_algorithms",
        "_fetch_results",
        "_in_flight",
        "_keys",
        "_last_attempt",
        "_last_ok",
        "_loop_task",
        "_min_refresh_interval",
        "_refresh_interval",
        "_session",
        "_timeout",
        "_url",
    )

    def __init__(
        self,
        url: str,
        algorithms: tuple[str, ...],
        *,
        refresh_interval: float,
        min_refresh_interval: float,
        timeout: float,
        fetch_results: dict[str, Counter],
    ) -> None:
        self._url = url
        self._algorithms = algorithms
        self._refresh_interval = refresh_interval
        self._min_refresh_interval = min_refresh_interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._fetch_results = fetch_results
        self._keys: SigningKeys | None = None
        self._last_attempt = float("-inf")
        self._last_ok = False
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    def find(self, kid: str | None, alg: str) -> Any | None:
        keys = self._keys
        return None if keys is None else keys.find(kid, alg)

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Fetch the keys once (a failure is logged and retried in the background), then keep them fresh."""
        self._session = session
        await self._fetch_once()
        self._loop_task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        for task in (self._loop_task, self._in_flight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop_task = None
        self._in_flight = None
        self._session = None

    async def refresh_for_unknown_kid(self) -> bool:
        """Fetch again for a token whose kid is unknown, unless a fetch happened too recently."""
        if self._in_flight is None and time.monotonic() - self._last_attempt < self._min_refresh_interval:
            return False
        await self._fetch_once()
        return True

    async def _fetch_once(self) -> None:
        """Join the fetch in flight, or start one. Shielded: a cancelled request does not cancel
        the fetch that other requests are waiting for."""
        task = self._in_flight
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch())
            self._in_flight = task
            task.add_done_callback(self._fetch_done)
        await asyncio.shield(task)

    def _fetch_done(self, task: asyncio.Task[None]) -> None:
        if self._in_flight is task:
            self._in_flight = None

    async def _refresh_loop(self) -> None:
        while True:
            # After a failure, try again as soon as the rate limit allows rather than a full interval later.
            interval = self._refresh_interval if self._last_ok else self._min_refresh_interval
            delay = self._last_attempt + interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # an on-demand fetch may have happened meanwhile: recompute
            await self._fetch_once()

    async def _fetch(self) -> None:
        self._last_attempt = time.monotonic()
        try:
            keys, problems = SigningKeys.from_jwks(await self._download(), self._algorithms)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            self._failed(f"fetching the JWKS from {self._url} failed: {error or type(error).__name__}")
            return
        for problem in problems:
            log.warning("JWKS %s: %s", self._url, problem)
        if not len(keys):  # not a rotation but a broken answer: never drop every key at once
            self._failed(f"the JWKS from {self._url} has no usable key; keeping the previous keys")
            return
        self._keys = keys
        self._last_ok = True
        self._fetch_results["ok"].inc()

    def _failed(self, message: str) -> None:
        self._last_ok = False
        self._fetch_results["error"].inc()
        log.warning("%s", message)

    async def _download(self) -> Any:
        session = self._session
        if session is None:
            raise ValueError("the key set is not started")
        headers = {"accept": "application/json"}
        async with session.get(self._url, timeout=self._timeout, headers=headers) as response:
            if response.status != 200:
                raise ValueError(f"HTTP status {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    raise ValueError(f"the document is larger than {_MAX_JWKS_BYTES} bytes")
        return orjson.loads(body)

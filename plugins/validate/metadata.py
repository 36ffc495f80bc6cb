"""Model metadata, fetched from the upstream once per model and version and kept for a TTL.

A fetcher answers `(model, version) -> metadata`, None when the upstream does not know the model
(404), and raises for anything else. Two fetchers exist: `HttpMetadataFetcher` (the `metadata_from`
base URL) and whatever the gateway wires in through the filter's `set_metadata_fetcher`, typically
one that asks a healthy endpoint of the route's cluster.

`SignatureCache` turns fetched metadata into signatures. Concurrent requests for a model not yet
known share one fetch. An unknown model is remembered briefly (a model deployed a moment later is
seen soon) and an unreachable upstream more briefly still; in both cases no client request waits
on repeated fetches. The cache belongs to one filter object, so a config reload (new filters)
starts it empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import orjson

from gateway.core import json_bounds
from gateway.core.errors import NotFound
from plugins.validate.signature import ModelSignature, signature_from_metadata

MetadataFetcher = Callable[[str, str | None], Awaitable[Mapping[str, Any] | None]]
"""(model, version or None) -> the metadata document, or None when the model is unknown."""

# Unknown models are re-asked after at most 5 s: a model deployed meanwhile is seen soon, while a
# client sending made-up names costs one fetch per name per 5 s.
UNKNOWN_TTL_S: Final = 5.0
# An unreachable upstream is re-asked after 1 s: fast recovery, and no fetch storm while it is down.
UNAVAILABLE_TTL_S: Final = 1.0
# Far more than the models one route serves; bounds memory when clients send arbitrary model names.
MAX_MODELS: Final = 1024
# One warning per 10 s is enough to notice a metadata outage without flooding the log.
_LOG_INTERVAL_S: Final = 10.0


class MetadataUnavailable(Exception):
    """The metadata could not be fetched (connection, timeout, an unexpected status or body)."""


class HttpMetadataFetcher:
    """GET {base_url}/v2/models/{model}[/versions/{version}], with one client session."""

    __slots__ = ("_base_url", "_session", "_timeout")

    def __init__(self, base_url: str, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __call__(self, model: str, version: str | None) -> Mapping[str, Any] | None:
        if self._session is None:
            raise MetadataUnavailable("the metadata client is not started")
        url = f"{self._base_url}/v2/models/{quote(model, safe='')}"
        if version is not None:
            url += f"/versions/{quote(version, safe='')}"
        try:
            async with self._session.get(url) as response:
                if response.status == 404:
                    await self._check_serves_metadata(url)
                    return None
                if response.status != 200:
                    raise MetadataUnavailable(f"{url} answered {response.status}")
                document = json_bounds.loads(await response.read(), "the metadata")
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, json_bounds.JsonTooComplex) as exc:
            raise MetadataUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(document, dict):
            raise MetadataUnavailable(f"{url} answered JSON that is not an object")
        return document

    async def _check_serves_metadata(self, url: str) -> None:
        """After a 404: the model is unknown when the server answers GET /v2, as every server
        publishing OIP v2 metadata does; MetadataUnavailable when it does not (TorchServe's v2
        envelope answers 404 for every metadata path, known model or not)."""
        assert self._session is not None
        async with self._session.get(f"{self._base_url}/v2") as server:
            if server.status != 200:
                raise MetadataUnavailable(f"{url} answered 404 and GET /v2 {server.status}: no metadata here")


class _Unknown:
    """The upstream does not serve this model (or version)."""


class _Unavailable:
    """The metadata could not be fetched or read: requests go through with structural checks only."""


UNKNOWN: Final = _Unknown()
UNAVAILABLE: Final = _Unavailable()
Outcome = ModelSignature | _Unknown | _Unavailable


@dataclass(frozen=True, slots=True)
class _Entry:
    outcome: Outcome
    expires: float


class SignatureCache:
    """Signatures by (model, version), fetched on first use; see the module docstring."""

    __slots__ = ("_entries", "_fetch", "_last_log", "_log", "_pending", "_ttl")

    def __init__(self, fetch: MetadataFetcher | None, ttl: float, log: logging.Logger) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._log = log
        self._entries: dict[tuple[str, str | None], _Entry] = {}
        self._pending: dict[tuple[str, str | None], asyncio.Future[Outcome]] = {}
        self._last_log = float("-inf")

    def set_fetcher(self, fetch: MetadataFetcher | None) -> None:
        self._fetch = fetch
        self._entries.clear()

    async def signature(self, model: str, version: str | None) -> ModelSignature | None:
        """The model's signature; None when it cannot be known now; NotFound for an unknown model."""
        if self._fetch is None:
            return None
        key = (model, version)
        entry = self._entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            outcome = entry.outcome
        else:
            pending = self._pending.get(key)
            outcome = await asyncio.shield(pending) if pending is not None else await self._load(key)
        if isinstance(outcome, ModelSignature):
            return outcome
        if isinstance(outcome, _Unknown):
            shown = f"model '{model}'" + (f" version '{version}'" if version is not None else "")
            raise NotFound(f"{shown} is not served here")
        return None

    async def _load(self, key: tuple[str, str | None]) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        outcome: Outcome = UNAVAILABLE
        try:
            outcome = await self._fetch_outcome(*key)
            self._remember(key, outcome)
        finally:  # also when this request is cancelled: the requests sharing the fetch must not hang
            del self._pending[key]
            future.set_result(outcome)
        return outcome

    async def _fetch_outcome(self, model: str, version: str | None) -> Outcome:
        fetch = self._fetch
        if fetch is None:
            return UNAVAILABLE
        try:
            metadata = await fetch(model, version)
        except Exception as exc:  # a fetcher may be foreign code: whatever fails, we cannot check
            self._warn("cannot fetch the metadata of model %r: %s", model, exc)
            return UNAVAILABLE
        if metadata is None:
            return UNKNOWN
        try:
            return signature_from_metadata(model, metadata)
        except ValueError as exc:
            self._warn("the metadata of model %r is not usable: %s", model, exc)
            return UNAVAILABLE

    def _remember(self, key: tuple[str, str | None], outcome: Outcome) -> None:
        if isinstance(outcome, ModelSignature):
            ttl = self._ttl
        else:
            ttl = min(self._ttl, UNKNOWN_TTL_S if isinstance(outcome, _Unknown) else UNAVAILABLE_TTL_S)
        entries = self._entries
        entries.pop(key, None)
        if len(entries) >= MAX_MODELS:
            del entries[next(iter(entries))]  # the oldest fetched
        entries[key] = _Entry(outcome, time.monotonic() + ttl)

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_INTERVAL_S:
            self._last_log = now
            self._log.warning(message, *args)

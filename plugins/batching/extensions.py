"""Whether a cluster's servers take binary tensors, read from their OIP v2 server metadata.

`upstream_binary_tensors: true` asks for batches in the binary tensor extension, but only some
servers implement it (Triton and turnout's workers do; MLServer and KServe's Python server do not
and answer 500 or 400). Before the first binary batch, `GET /v2` tells which extensions the server
has; batches go as binary only while that list holds `binary_tensor_data`, and as JSON otherwise.
The answer is forgotten when a binary batch fails (the cluster may now hold other servers) and with
each config reload (the batching filter is handed new senders), so it is read again then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

import orjson

from gateway.core import json_bounds
from gateway.core.errors import GatewayError
from plugins.batching.upstream import GetPath

BINARY_EXTENSION: Final = "binary_tensor_data"
# After an unreadable GET /v2, batches go as JSON and the server is asked again after 5 s: a server
# still starting is seen soon, and a server without the endpoint costs one GET per 5 s.
RETRY_AFTER_S: Final = 5.0

_log = logging.getLogger("turnout.batching")


class ServerExtensions:
    """One cluster's answer to "binary tensors?", read once and shared by its batches."""

    __slots__ = ("_binary", "_get", "_lock", "_retry_at")

    def __init__(self, get: GetPath) -> None:
        self._get = get
        self._binary: bool | None = None
        self._retry_at = 0.0
        self._lock = asyncio.Lock()

    async def binary(self) -> bool:
        """True when the cluster's servers say they implement the binary tensor extension."""
        known = self._binary
        if known is not None:
            return known
        if time.monotonic() < self._retry_at:
            return False
        async with self._lock:  # concurrent first batches share one GET
            if self._binary is None and time.monotonic() >= self._retry_at:
                self._binary = await self._read()
                if self._binary is None:
                    self._retry_at = time.monotonic() + RETRY_AFTER_S
            return bool(self._binary)

    def forget(self) -> None:
        """A binary batch failed: read the extensions again before the next one."""
        self._binary = None
        self._retry_at = 0.0

    async def _read(self) -> bool | None:
        try:
            status, body = await self._get("/v2")
        except GatewayError as error:
            _log.warning("cannot read the server metadata (GET /v2): %s; batches go as JSON", error.message)
            return None
        if status != 200:
            _log.warning("GET /v2 answered %s; batches go as JSON", status)
            return None
        try:
            document = json_bounds.loads(body, "the server metadata")
        except (orjson.JSONDecodeError, json_bounds.JsonTooComplex):
            document = None
        extensions = document.get("extensions") if isinstance(document, dict) else None
        if not isinstance(extensions, list):
            _log.warning("GET /v2 lists no extensions; batches go as JSON")
            return False
        if BINARY_EXTENSION not in extensions:
            _log.warning("the upstream does not implement %s; batches go as JSON", BINARY_EXTENSION)
            return False
        return True

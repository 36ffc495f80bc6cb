"""`envoy.service.discovery.v3.AggregatedDiscoveryService`: turnout as the xDS control plane.

Both variants over one server:

- State of the world (`StreamAggregatedResources`): per type, the client names what it wants (an
  empty list for listeners and clusters is a wildcard: everything). Each response carries every
  requested resource of one type, the type's version and a nonce; a request that repeats the nonce
  is an ACK, or a NACK when it carries `error_detail` (logged with Envoy's message; the client keeps
  its previous version, and turnout sends again only once the resources change).
- Delta (`DeltaAggregatedResources`): subscriptions change by name; each response carries only the
  resources whose version differs from what the client has, and the names that are gone.

Whenever the snapshot changes (a canary step, a health flip, a reload) every stream sends what
changed for its subscriptions. A request for an unknown type is answered with an empty response.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from gateway.mesh.snapshots import Snapshot, XdsSnapshots
from gateway.mesh.xds_resources import CLUSTER, LISTENER

log = logging.getLogger("turnout.mesh.xds")

# Types whose empty subscription means "everything" (xDS's wildcard); others name their resources.
_WILDCARD_TYPES = frozenset({LISTENER, CLUSTER})
_END = object()


async def _pump(requests: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
    """Move the client's requests into a queue, so the stream can wait on them and on changes."""
    try:
        async for request in requests:
            await queue.put(request)
    finally:
        await queue.put(_END)


async def _next_event(queue: asyncio.Queue[Any], snapshots: XdsSnapshots, seen: Snapshot) -> Any | None:
    """The client's next request, or None when the snapshot changed first (or since `seen`)."""
    if not queue.empty():
        return queue.get_nowait()
    if snapshots.current is not seen:
        return None
    changed = snapshots.changed
    getter = asyncio.ensure_future(queue.get())
    waiter = asyncio.ensure_future(changed.wait())
    try:
        await asyncio.wait((getter, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not getter.done():
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
    return getter.result() if getter.done() and not getter.cancelled() else None


class AggregatedDiscovery(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, snapshots: XdsSnapshots) -> None:
        self._snapshots = snapshots
        self._nonces = itertools.count(1)

    # ----- state of the world -----

    async def StreamAggregatedResources(  # gRPC's name
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        pump = asyncio.ensure_future(_pump(requests, queue))
        wanted: dict[str, frozenset[str] | None] = {}  # None: wildcard
        sent: dict[str, tuple[str, frozenset[str] | None]] = {}  # type -> (version, names) sent
        nonces: dict[str, str] = {}
        snapshot = self._snapshots.current
        try:
            while True:
                request = await _next_event(queue, self._snapshots, snapshot)
                if request is _END:
                    return
                snapshot = self._snapshots.current
                # A request answering an older response is stale: a newer one is on its way.
                if request is not None and request.response_nonce in ("", nonces.get(request.type_url)):
                    kind = request.type_url
                    if request.HasField("error_detail"):  # kept as sent: resent only once it changes
                        _log_nack(request.node.id, kind, request.response_nonce, request.error_detail.message)
                    requested = frozenset(request.resource_names)
                    wanted[kind] = None if not requested and kind in _WILDCARD_TYPES else requested
                for kind, names in wanted.items():
                    version = snapshot.type_versions.get(kind, "")
                    if sent.get(kind) == (version, names):
                        continue
                    nonce = str(next(self._nonces))
                    nonces[kind] = nonce
                    sent[kind] = (version, names)
                    yield _sotw_response(snapshot, kind, names, version, nonce)
        finally:
            pump.cancel()

    # ----- delta -----

    async def DeltaAggregatedResources(  # gRPC's name
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        pump = asyncio.ensure_future(_pump(requests, queue))
        subscribed: dict[str, set[str] | None] = {}  # None: wildcard
        known: dict[str, dict[str, str]] = {}  # type -> name -> version the client has
        snapshot = self._snapshots.current
        try:
            while True:
                request = await _next_event(queue, self._snapshots, snapshot)
                if request is _END:
                    return
                snapshot = self._snapshots.current
                if request is not None and request.HasField("error_detail"):
                    # Rejected: the client keeps what it had; resent only once the resource changes.
                    _log_nack(
                        request.node.id,
                        request.type_url,
                        request.response_nonce,
                        request.error_detail.message,
                    )
                elif request is not None:
                    _subscribe(request, subscribed, known)
                for kind, names in subscribed.items():
                    response = self._delta_response(snapshot, kind, names, known.setdefault(kind, {}))
                    if response is not None:
                        yield response
        finally:
            pump.cancel()

    def _delta_response(
        self, snapshot: Snapshot, kind: str, names: set[str] | None, known: dict[str, str]
    ) -> Any | None:
        versions = snapshot.versions.get(kind, {})
        resources = snapshot.resources.get(kind, {})
        targets = set(versions) if names is None else names
        changed = [name for name in sorted(targets) if name in versions and known.get(name) != versions[name]]
        removed = [name for name in sorted(known) if name not in versions or name not in targets]
        if not changed and not removed:
            return None
        for name in removed:
            known.pop(name, None)
        entries = []
        for name in changed:
            known[name] = versions[name]
            entry = discovery_pb2.Resource(name=name, version=versions[name])
            entry.resource.Pack(resources[name])
            entries.append(entry)
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=snapshot.type_versions.get(kind, ""),
            type_url=kind,
            resources=entries,
            removed_resources=removed,
            nonce=str(next(self._nonces)),
        )


def _subscribe(
    request: Any, subscribed: dict[str, set[str] | None], known: dict[str, dict[str, str]]
) -> None:
    """Apply a delta request's subscription changes (the first one of a type may be a wildcard)."""
    kind = request.type_url
    names = subscribed.get(kind, set())
    if kind not in subscribed:
        known[kind] = dict(request.initial_resource_versions)
        first = set(request.resource_names_subscribe)
        names = None if kind in _WILDCARD_TYPES and (not first or "*" in first) else first
    elif names is not None:
        names |= set(request.resource_names_subscribe)
    if names is not None:
        names -= set(request.resource_names_unsubscribe)
        for name in request.resource_names_unsubscribe:
            known.get(kind, {}).pop(name, None)
    subscribed[kind] = names


def _sotw_response(
    snapshot: Snapshot, kind: str, names: frozenset[str] | None, version: str, nonce: str
) -> Any:
    resources = snapshot.resources.get(kind, {})
    chosen = sorted(resources) if names is None else sorted(n for n in names if n in resources)
    response = discovery_pb2.DiscoveryResponse(version_info=version, type_url=kind, nonce=nonce)
    for name in chosen:
        response.resources.add().Pack(resources[name])
    return response


def _log_nack(node: str, kind: str, nonce: str, message: str) -> None:
    log.warning(
        "xDS client %r rejected %s (nonce %s): %s", node or "?", kind.rsplit(".", 1)[-1], nonce, message
    )

"""Sending one batch upstream and answering each of its members.

The members' inputs are merged into one request, sent through the cluster's `send`, and the answer
is split back by row counts. A batch of one member whose original body is known is sent as the
caller sent it and answered with the upstream's body as is: exactly what proxying it alone would
have done, without decoding and re-encoding it twice.

When the call fails, every member gets the same failure: an upstream error status comes back to
each member with the upstream's body; an exception (no answer) is raised to each member as a
`GatewayError`. A member whose caller went away meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from gateway.core.errors import BadGateway, GatewayError, ServiceUnavailable
from gateway.core.trace import RequestTrace
from plugins.batching.extensions import ServerExtensions
from plugins.batching.lane import BatchLane
from plugins.batching.member import BatchAnswer, Member, fail_members
from plugins.batching.payload import MemberBody

# Upstream headers that still describe a failed answer once it is copied to each member.
_KEPT_ON_FAILURE: Final = ("content-type", "retry-after")
# Upstream headers that would not describe a member's answer: hop-by-hop and framing headers (the
# gateway frames each answer itself), the connection's own date and server, and a worker's load
# report (for the gateway's balancer, not the client). Everything else, cache-control and
# x-request-id included, describes an answer relayed whole to a lone member.
_NOT_RELAYED: Final = frozenset(
    {
        "date",
        "server",
        "x-turnout-queue-depth",
        "x-turnout-inflight",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# Upstream headers that still hold for each member's share of a split answer: the model's caching
# rules apply to every row it computed.
_KEPT_ON_SPLIT: Final = ("cache-control", "pragma", "expires")


@dataclass(slots=True)
class Batch:
    id: int
    members: list[Member]
    rows: int
    dispatched: float
    """time.monotonic() when the batch left its queue."""
    epoch: int
    """The adaptive controller's epoch when the batch was formed."""
    extensions: ServerExtensions | None = None
    """Set when the batch may travel as binary tensors if the cluster's servers take them."""
    holds_slot: bool = True
    """Until the upstream call ends: the batch holds one of its cluster's in-flight slots."""


def settle(lane: BatchLane, batch: Batch) -> None:
    """After the send task ended by any way, even cancelled before it started: release the slot
    and fail the members nobody answered, so no caller waits forever."""
    if batch.holds_slot:
        batch.holds_slot = False
        lane.slots.release()
    fail_members(batch.members, ServiceUnavailable("the gateway stopped before the batch was answered"))


async def send_batch(lane: BatchLane, batch: Batch) -> None:
    """Send `batch` (holding one of `lane.slots`, released here) and settle every member."""
    members = batch.members
    payloads = [member.payload for member in members]
    metrics = lane.metrics
    alone = payloads[0].original if len(payloads) == 1 else None
    extensions = batch.extensions
    sent_binary = False
    try:
        try:
            if alone is not None:
                encoded = alone
            else:
                binary = extensions is None or await extensions.binary()
                encoded = payloads[0].format.merge(payloads, binary)
                sent_binary = extensions is not None and bool(encoded.headers)
            started = time.monotonic()
            send_traced = lane.upstream.send_traced
            trace = _batch_trace(members) if send_traced is not None else None
            if send_traced is None or trace is None:
                status, raw_headers, body = await lane.upstream.send(
                    lane.path, encoded.body, encoded.content_type, encoded.headers
                )
            else:
                status, raw_headers, body = await send_traced(
                    lane.path, encoded.body, encoded.content_type, encoded.headers, trace
                )
            latency = time.monotonic() - started
        finally:
            batch.holds_slot = False
            lane.slots.release()
        metrics.upstream_latency.observe(latency)
        lane.observe(latency, batch.rows, batch.epoch)
        headers = {name.lower(): value for name, value in raw_headers.items()}
        if 200 <= status < 300 and alone is not None:
            relayed = tuple((name, value) for name, value in headers.items() if name not in _NOT_RELAYED)
            shares = [MemberBody(relayed, body)]
        elif 200 <= status < 300:
            kept = _kept(headers, _KEPT_ON_SPLIT)
            shares = [
                MemberBody(share.headers + kept, share.body)
                for share in payloads[0].format.split(headers, body, payloads)
            ]
        else:
            metrics.upstream_failures.inc()
            if sent_binary and extensions is not None:
                extensions.forget()  # the servers may have changed: ask again before the next batch
            shares = [MemberBody(_kept(headers, _KEPT_ON_FAILURE), body)] * len(members)
    except asyncio.CancelledError:
        fail_members(members, ServiceUnavailable("the gateway stopped before the batch was answered"))
        raise
    except GatewayError as exc:
        metrics.upstream_failures.inc()
        fail_members(members, exc)
        return
    except Exception as exc:
        metrics.upstream_failures.inc()
        fail_members(members, BadGateway(f"the batched upstream call failed: {type(exc).__name__}: {exc}"))
        return
    for member, share in zip(members, shares, strict=True):
        if not member.future.done():
            member.future.set_result(
                BatchAnswer(
                    status,
                    share.headers,
                    share.body,
                    member.rows,
                    batch.dispatched - member.arrived,
                    batch.id,
                    batch.rows,
                    len(members),
                    latency,
                )
            )


def _batch_trace(members: list[Member]) -> RequestTrace | None:
    """The trace the batch's upstream attempts belong to: the first recorded member's, else the
    first member's that has one (its trace context still goes upstream), else none."""
    fallback = None
    for member in members:
        trace = member.trace
        if trace is not None:
            if trace.exemplar_id is not None:
                return trace
            if fallback is None:
                fallback = trace
    return fallback


def _kept(headers: dict[str, str], names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The upstream's headers among `names` (lower-case), for an answer copied to members as is."""
    return tuple((name, headers[name]) for name in names if name in headers)

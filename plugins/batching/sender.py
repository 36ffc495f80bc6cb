"""Sending one batch upstream and answering each of its members.

The members' inputs are merged into one request, sent through the cluster's `send`, and the answer
is split back by row counts. A batch of one member whose original body is known is sent as the
caller sent it and answered with the upstream's body as is: exactly what proxying it alone would
have done, without decoding and re-encoding it twice.

When the call fails, every member gets the same failure: an upstream error status comes back to
each member with the upstream's body; an exception (no answer) is raised to each member as a
`GatewayError`. A member whose caller went away meanwhile is skipped.

Each member gets the upstream's headers (gRPC: initial and trailing metadata) as an unbatched call
would, less what describes one connection or one call's framing rather than an answer
(`_NOT_RELAYED`); a member's share cut from a split answer also goes without what describes the
batch's body as a whole (`_WHOLE_BODY`): it carries its own content type instead.

The batch's upstream call carries what holds for the whole call, over REST as headers and over
gRPC as metadata (`batch_headers`): a request id, the member's own when it went alone, else one
made for the batch, with the members' ids in `x-turnout-batch-members`; and, where tracing is on,
the `traceparent` of the attempt's span (the sender's `send_traced`). A member's own headers and
metadata (credentials, user ids, its traceparent) do not go upstream: they describe one member, and
the merged call is nobody's in particular.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.core.errors import BadGateway, GatewayError, ServiceUnavailable
from gateway.core.trace import RequestTrace
from plugins.batching.extensions import ServerExtensions
from plugins.batching.lane import BatchLane
from plugins.batching.member import BatchAnswer, Member, fail_members
from plugins.batching.payload import MemberBody
from plugins.batching.upstream import Pairs, UpstreamAnswer, UpstreamReply

# Upstream headers that would not describe a member's answer: hop-by-hop and framing headers (the
# gateway frames each answer itself), the connection's own date and server, and a worker's load
# report (for the gateway's balancer, not the client). Everything else, cache-control and
# x-request-id included (the id names the upstream call, as it does for a call proxied alone),
# describes an answer relayed whole: a lone member's, or a failure copied to every member.
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
# Upstream headers that describe the batch's body as a whole, wrong for a member's share cut from
# it: its type and binary-tensor JSON length (the share has its own), its encoding (the share is
# encoded anew), its digests, entity tag and range. The rest (a model's caching rules, a server's
# own headers and metadata) holds for every row the call computed.
_WHOLE_BODY: Final = frozenset(
    {
        "content-type",
        "inference-header-content-length",
        "content-encoding",
        "content-md5",
        "content-digest",
        "repr-digest",
        "digest",
        "etag",
        "content-range",
    }
)
_NOT_ON_SPLIT: Final = _NOT_RELAYED | _WHOLE_BODY
REQUEST_ID: Final = "x-request-id"
BATCH_MEMBERS: Final = "x-turnout-batch-members"
# The most bytes of member ids x-turnout-batch-members carries: 32 members' 32-digit ids take about
# 1 KiB, while servers refuse a request head past 8-16 KiB (nginx's 8 KiB line, h11's 16 KiB head).
# A larger batch names the members that fit; each member's trace and answer name the batch's id.
MAX_MEMBER_IDS_BYTES: Final = 4096


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
    request_id = ""
    try:
        try:
            if alone is not None:
                encoded = alone
            else:
                binary = extensions is None or await extensions.binary()
                encoded = payloads[0].format.merge(payloads, binary)
                sent_binary = extensions is not None and bool(encoded.headers)
            headers = batch_headers(members, encoded.headers)
            request_id = headers.get(REQUEST_ID, "")
            started = time.monotonic()
            send_traced = lane.upstream.send_traced
            trace = _batch_trace(members) if send_traced is not None else None
            if send_traced is None or trace is None:
                reply = await lane.upstream.send(lane.path, encoded.body, encoded.content_type, headers)
            else:
                reply = await send_traced(lane.path, encoded.body, encoded.content_type, headers, trace)
            latency = time.monotonic() - started
        finally:
            batch.holds_slot = False
            lane.slots.release()
        metrics.upstream_latency.observe(latency)
        lane.observe(latency, batch.rows, batch.epoch)
        status, head, body, tail = _answer_of(reply)
        if 200 <= status < 300 and alone is None:
            headers = dict(head)
            kept = _without(head, _NOT_ON_SPLIT)
            trailers = _without(tail, _NOT_ON_SPLIT)
            shares = [
                MemberBody(share.headers + kept, share.body)
                for share in payloads[0].format.split(headers, body, payloads)
            ]
        else:
            if not 200 <= status < 300:
                metrics.upstream_failures.inc()
                if sent_binary and extensions is not None:
                    extensions.forget()  # the servers may have changed: ask again before the next batch
            trailers = _without(tail, _NOT_RELAYED)
            shares = [MemberBody(_without(head, _NOT_RELAYED), body)] * len(members)
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
                    trailers,
                    request_id,
                )
            )


def batch_headers(members: list[Member], headers: Mapping[str, str]) -> dict[str, str]:
    """The batch's upstream headers: the body's own (`headers`), its request id, and for a merged
    batch its members' ids (see the module docstring)."""
    sent = dict(headers)
    if len(members) == 1:
        if members[0].request_id:
            sent[REQUEST_ID] = members[0].request_id
        return sent
    # Ids need to be unique, not secret (as the gateway's own request ids).
    sent[REQUEST_ID] = random.getrandbits(128).to_bytes(16).hex()
    named: list[str] = []
    size = 0
    for member in members:
        size += len(member.request_id) + 1
        if size > MAX_MEMBER_IDS_BYTES:
            break
        if member.request_id:
            named.append(member.request_id)
    if named:
        sent[BATCH_MEMBERS] = ",".join(named)
    return sent


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


def _answer_of(reply: UpstreamReply) -> tuple[int, Pairs, bytes, Pairs]:
    """(status, head, body, trailers) with lower-case names, whichever form the sender answered."""
    if isinstance(reply, UpstreamAnswer):
        head = tuple((name.lower(), value) for name, value in reply.headers)
        tail = tuple((name.lower(), value) for name, value in reply.trailers)
        return reply.status, head, reply.body, tail
    status, headers, body = reply
    return status, tuple((name.lower(), value) for name, value in headers.items()), body, ()


def _without(pairs: Pairs, names: frozenset[str]) -> Pairs:
    return tuple((name, value) for name, value in pairs if name not in names)

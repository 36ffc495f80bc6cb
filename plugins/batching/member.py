"""One queued request (a member of a future batch), the handle its caller awaits, and its answer.

The handle is awaitable and cancellable. Cancelling it, or cancelling the task that awaits it (the
client went away), cancels the member's future; the queue sees that and drops the member, so a
batch never carries a request nobody waits for. Once a member has been sent, cancelling only
discards its share of the answer.
"""

from __future__ import annotations

import asyncio
import copy
import enum
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import GatewayError
from gateway.core.trace import RequestTrace
from plugins.batching.payload import Payload


class MemberState(enum.Enum):
    QUEUED = enum.auto()
    DELAYED = enum.auto()
    """Its queue timeout passed with action `delay`: it waits behind the requests that have not."""
    GONE = enum.auto()
    """Dispatched, rejected or cancelled: no longer in the queue."""


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """One member's answer, with what its access-log line and metrics need about its batch."""

    status: int
    headers: tuple[tuple[str, str], ...]
    """Lower-case names: the content type (and the JSON header length for binary tensors) of this
    member's body, and what the upstream's answer said that holds for it (`sender.py`)."""
    body: bytes
    rows: int
    """This member's rows."""
    queue_delay: float
    """Seconds from `submit` until its batch left for the upstream."""
    batch_id: int
    """Sequence number of the batch within its batcher (members of one batch share it)."""
    batch_rows: int
    batch_members: int
    upstream_latency: float
    """Seconds the batched upstream call took."""
    trailers: tuple[tuple[str, str], ...] = ()
    """The upstream's trailing metadata (gRPC), by the same rule as `headers`."""
    batch_request_id: str = ""
    """The request id the batch's upstream call carried (`x-request-id`): the member's own when it
    went alone, else one the gateway made for the batch."""


class Member:
    """A queued request; owned by its lane's queue."""

    __slots__ = ("arrived", "future", "level", "payload", "request_id", "state", "timer", "trace")

    def __init__(
        self,
        payload: Payload,
        level: int,
        arrived: float,
        future: asyncio.Future[BatchAnswer],
        trace: RequestTrace | None = None,
        request_id: str = "",
    ) -> None:
        self.trace = trace
        """The request's trace (`ctx.trace`): the batch's upstream attempts are recorded in one."""
        self.request_id = request_id
        """The request's id (`ctx.request_id`), named in the batch's upstream call."""
        self.payload = payload
        self.level = level
        """0-based index of its priority level; 0 (configured level 1) is served first."""
        self.arrived = arrived
        self.future = future
        self.state = MemberState.QUEUED
        self.timer: asyncio.TimerHandle | None = None

    @property
    def rows(self) -> int:
        return self.payload.rows


def fail_members(members: Iterable[Member], error: GatewayError) -> None:
    """Give every unanswered member the error, each its own copy: one exception object raised in
    many tasks would collect every task's frames in its traceback and keep them alive."""
    for member in members:
        if not member.future.done():
            member.future.set_exception(copy.copy(error))


class PendingRequest:
    """What `Batcher.submit` returns: await it for the `BatchAnswer`; `cancel()` withdraws it."""

    __slots__ = ("_member",)

    def __init__(self, member: Member) -> None:
        self._member = member

    def __await__(self) -> Generator[Any, None, BatchAnswer]:
        return self._member.future.__await__()

    def cancel(self) -> bool:
        """Withdraw the request: removed from its queue if still there. False when already answered."""
        return self._member.future.cancel()

    def done(self) -> bool:
        return self._member.future.done()

    @property
    def rows(self) -> int:
        return self._member.rows

    @property
    def timed_out(self) -> bool:
        """Its queue timeout passed with action `delay`: it now waits behind the others."""
        return self._member.state is MemberState.DELAYED

    @property
    def priority(self) -> int:
        """The priority level it queued at (1 is served first)."""
        return self._member.level + 1

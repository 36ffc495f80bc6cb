"""The waiting requests of one batch queue: priority levels, first come first served within a level.

Like Triton's priority queue, each level keeps two lines: requests within their queue timeout, and
requests whose timeout passed with action `delay`, served only when the first line of that level is
empty. A batch is taken level by level, from level 1 down, as a prefix of that order: a request that
does not fit ends the batch rather than being overtaken, so a large request is never starved by
smaller ones queued after it.

Removal (cancel, timeout, dispatch) marks a member GONE in O(1); lines drop GONE members when they
reach the front, or in one pass when they pile up behind a member that waits long (a low-priority
request under sustained high-priority load). `arrivals` keeps every member in arrival order, so the
oldest waiting member, whose `max_queue_delay` decides when a partial batch goes, is found without
a scan.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

from plugins.batching.member import Member, MemberState

_QUEUED = MemberState.QUEUED
_DELAYED = MemberState.DELAYED
_GONE = MemberState.GONE
# Entries beyond twice the members waiting that a line may hold before it is rebuilt: rebuilding
# costs one pass, so doing it only past this slack keeps it amortised O(1) per request.
_COMPACT_SLACK = 64


class MemberQueue:
    __slots__ = ("_arrivals", "_delayed", "_ready", "count", "rows")

    def __init__(self, levels: int) -> None:
        self._ready: list[deque[Member]] = [deque() for _ in range(levels)]
        self._delayed: list[deque[Member]] = [deque() for _ in range(levels)]
        self._arrivals: deque[Member] = deque()
        self.count = 0
        """Members waiting."""
        self.rows = 0
        """Rows of the members waiting."""

    def __len__(self) -> int:
        return self.count

    @property
    def held(self) -> int:
        """Entries held in all lines, including members that left but are not forgotten yet; stays
        within a constant factor of `count` (a diagnostic: it shows that nothing piles up)."""
        lines = (*self._ready, *self._delayed, self._arrivals)
        return sum(len(line) for line in lines)

    def push(self, member: Member) -> None:
        member.state = _QUEUED
        self._ready[member.level].append(member)
        self._arrivals.append(member)
        self._count_in(member)

    def remove(self, member: Member) -> bool:
        """Take a waiting member out (cancelled or rejected); False when it was not waiting."""
        if member.state is _GONE:
            return False
        member.state = _GONE
        self._count_out(member)
        return True

    def delay(self, member: Member) -> None:
        """Move a member whose queue timeout passed behind the undelayed members of its level."""
        if member.state is _QUEUED:
            member.state = _DELAYED
            self._delayed[member.level].append(member)

    def oldest_arrival(self) -> float | None:
        """When the member waiting longest arrived; None when the queue is empty."""
        arrivals = self._arrivals
        while arrivals and arrivals[0].state is _GONE:
            arrivals.popleft()
        return arrivals[0].arrived if arrivals else None

    def take(self, cap: int, preferred: Sequence[int]) -> list[Member]:
        """Remove and return the next batch: at most `cap` rows, except that a first member larger
        than `cap` goes alone. With `preferred` sizes, the batch is cut at the largest preferred
        row count that a prefix reaches exactly, when one does."""
        candidates: list[Member] = []
        rows = 0
        for member in self._in_order():
            if candidates and rows + member.rows > cap:
                break
            candidates.append(member)
            rows += member.rows
            if rows >= cap:
                break
        if preferred and len(candidates) > 1:
            candidates = _cut_at_preferred(candidates, preferred)
        for member in candidates:
            member.state = _GONE
            self._count_out(member)
        self._drop_gone_fronts()
        return candidates

    def drain(self) -> list[Member]:
        """Remove and return every waiting member (the batcher is stopping)."""
        members = [member for member in self._arrivals if member.state is not _GONE]
        for member in members:
            member.state = _GONE
            self._count_out(member)
        for line in (*self._ready, *self._delayed):
            line.clear()
        self._arrivals.clear()
        return members

    def _in_order(self) -> Iterator[Member]:
        # A member cancelled in this turn of the event loop is still QUEUED until its future's
        # callback removes it; skipping it here keeps it out of a batch taken meanwhile.
        for level in range(len(self._ready)):
            for member in self._ready[level]:
                if member.state is _QUEUED and not member.future.done():
                    yield member
            for member in self._delayed[level]:
                if member.state is _DELAYED and not member.future.done():
                    yield member

    def _drop_gone_fronts(self) -> None:
        """Forget members that left: those at the front of each line at once, and the rest when a
        line holds many more entries than members waiting (members stuck behind a long-waiting one,
        such as a low-priority request under sustained high-priority load)."""
        bound = 2 * self.count + _COMPACT_SLACK
        for level, line in enumerate(self._ready):
            self._ready[level] = _trimmed(line, _QUEUED, bound)
            self._delayed[level] = _trimmed(self._delayed[level], _DELAYED, bound)
        arrivals = self._arrivals
        while arrivals and arrivals[0].state is _GONE:
            arrivals.popleft()
        if len(arrivals) > bound:
            self._arrivals = deque(member for member in arrivals if member.state is not _GONE)

    def _count_in(self, member: Member) -> None:
        self.count += 1
        self.rows += member.rows

    def _count_out(self, member: Member) -> None:
        self.count -= 1
        self.rows -= member.rows


def _trimmed(line: deque[Member], live: MemberState, bound: int) -> deque[Member]:
    while line and line[0].state is not live:
        line.popleft()
    if len(line) > bound:
        return deque(member for member in line if member.state is live)
    return line


def _cut_at_preferred(candidates: list[Member], preferred: Sequence[int]) -> list[Member]:
    wanted = set(preferred)
    rows = 0
    cut = 0
    for index, member in enumerate(candidates, start=1):
        rows += member.rows
        if rows in wanted:
            cut = index
    return candidates[:cut] if cut else candidates

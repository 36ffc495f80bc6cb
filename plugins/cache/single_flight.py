"""Concurrent identical requests share one upstream call.

The first request for a key (the leader) goes upstream; later ones (followers) wait on a future
that the leader resolves with the stored answer, or with None when its answer cannot be shared
(an error, a non-2xx, a failed request), which sends each follower upstream on its own. The shared
future only ever gets a result, never an exception, and each follower waits through `shield`, so a
follower that gives up or is cancelled never cancels it for the others. The future is made when
the first follower arrives, not when the leader sets out: most flights have no follower, and a
future made and resolved for nobody cost each miss about a microsecond.
"""

from __future__ import annotations

import asyncio

from plugins.cache.entry import CachedResponse

Flight = asyncio.Future[CachedResponse | None]
"""One request in flight: resolved with its shareable answer, or None."""


class SingleFlight:
    """The requests in flight, by cache key."""

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        # None: a leader in flight that no follower has joined yet.
        self._flights: dict[str, asyncio.Future[CachedResponse | None] | None] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def in_flight(self, key: str) -> asyncio.Future[CachedResponse | None] | None:
        """The flight to follow for `key`, made now for its first follower; None when none leads."""
        flights = self._flights
        if key not in flights:
            return None
        future = flights[key]
        if future is None:
            future = flights[key] = asyncio.get_running_loop().create_future()
        return future

    def lead(self, key: str) -> bool:
        """Make the caller the leader for `key`; False when another request already is."""
        if key in self._flights:
            return False
        self._flights[key] = None
        return True

    def finish(self, key: str, answer: CachedResponse | None) -> None:
        """The leader's outcome: followers get `answer` (None: go upstream yourselves)."""
        future = self._flights.pop(key, None)
        if future is not None and not future.done():
            future.set_result(answer)

    @staticmethod
    async def follow(flight: asyncio.Future[CachedResponse | None], timeout: float) -> CachedResponse | None:
        """The leader's answer, or None if it is not shareable or takes longer than `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(flight)
        except TimeoutError:
            return None

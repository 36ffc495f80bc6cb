"""A stored answer: what is kept of an upstream response, when it may be kept, and its bytes in Redis.

Only what describes the answer itself is kept. Hop-by-hop headers, framing (the data path frames a
body it sends whole), and headers that belong to one request (rate-limit state, request ids, Age)
are dropped. An answer is stored only when it is a 2xx with a buffered body, sets no cookie, and the
upstream did not mark it `no-store` or `private`. An answer that allows a shared cache to keep it
for any caller (`shared_use_allowed`) may also serve, and be stored for, requests with credentials.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final

import orjson

from gateway.core.filters import Response

CACHE_HEADER: Final = "x-turnout-cache"
_NOT_KEPT: Final = frozenset(
    {
        "age",
        "connection",
        "content-length",
        "date",
        "keep-alive",
        "proxy-connection",
        "ratelimit",
        "ratelimit-policy",
        "retry-after",
        "x-turnout-inflight",
        "x-turnout-queue-depth",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-request-id",
        CACHE_HEADER,
    }
)
_UNCACHEABLE_DIRECTIVES: Final = frozenset({"no-store", "private"})
# RFC 9111 3.5: the directives with which an answer to a request with credentials may be stored by a
# shared cache and used for other requests.
_SHARED_USE_DIRECTIVES: Final = frozenset({"public", "s-maxage", "must-revalidate"})
# Python's own bookkeeping per stored answer (slot object, tuples, dict entry): an estimate, so that
# many tiny answers still count against max_bytes.
ENTRY_OVERHEAD_BYTES: Final = 256


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    stored_at: float
    """time.time() when stored: the Age of a hit, in any process."""

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(name) + len(value) for name, value in self.headers)

    def response(self, outcome: str) -> Response:
        """A fresh response for one caller, marked with how it was obtained (hit or coalesced)."""
        now = time.time()
        age = str(max(0, int(now - self.stored_at)))
        # RFC 9110 6.6.1: an origin's Date is "now" for the cached copy, with Age saying how old it is.
        headers = [
            *self.headers,
            (CACHE_HEADER, outcome),
            ("age", age),
            ("date", formatdate(now, usegmt=True)),
        ]
        return Response(self.status, headers, self.body)

    def to_bytes(self) -> bytes:
        head = orjson.dumps([self.status, self.headers, self.stored_at])
        return head + b"\n" + self.body

    @classmethod
    def from_bytes(cls, raw: bytes) -> CachedResponse:
        head, _, body = raw.partition(b"\n")  # JSON has no raw newline, so the first one ends the head
        status, headers, stored_at = orjson.loads(head)
        return cls(
            int(status), tuple((str(name), str(value)) for name, value in headers), body, float(stored_at)
        )


def directives(value: str | None) -> frozenset[str]:
    """The directive names of a Cache-Control header, lower-case, without their arguments."""
    if not value:
        return frozenset()
    return frozenset(part.partition("=")[0].strip().lower() for part in value.split(","))


def shared_use_allowed(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether an answer's Cache-Control lets a shared cache use it for requests with credentials."""
    return any(
        name == "cache-control" and not directives(value).isdisjoint(_SHARED_USE_DIRECTIVES)
        for name, value in headers
    )


def storable(response: Response) -> CachedResponse | None:
    """What to keep of an upstream response, or None when it must not be stored."""
    body = response.body
    if not 200 <= response.status < 300 or body is None:
        return None
    kept = []
    for name, value in response.headers:
        if name == "set-cookie":
            return None
        if name == "cache-control" and directives(value) & _UNCACHEABLE_DIRECTIVES:
            return None
        if name not in _NOT_KEPT:
            kept.append((name, value))
    return CachedResponse(response.status, tuple(kept), bytes(body), time.time())

"""The per-request context: made once when a request's headers are parsed, passed to every stage.

Routers, balancers, filters and experiment splits are shared objects that hold no per-request state;
whatever they learn about one request lives here. `__slots__` (via `slots=True`) keeps attribute
access fast and makes a typo an error instead of a silent new attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.core.filters import Response
    from gateway.core.trace import RequestTrace


# The longest answer copied for a watcher (`RequestContext.watch_answer`): a sampled prediction is a
# few hundred bytes to a few kB; a megabyte (an image, a long embedding batch) would cost the
# request's worker a megabyte copy for a sample a monitor gains little from.
ANSWER_COPY_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by an authentication filter."""

    id: str
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    tier: str | None = None
    roles: frozenset[str] = frozenset()


@dataclass(slots=True, eq=False)
class RequestContext:
    """Everything known about one request, from its headers to its access-log line."""

    method: str
    path: str
    """The path without the query string, as sent by the client (percent-encoding kept)."""
    query: str
    """The raw query string without the '?' ("" when there is none)."""
    headers: dict[str, str]
    """Request headers by lower-case name; repeated headers joined with ", "."""
    client_ip: str
    started: float
    """time.monotonic() when the request's headers were complete."""
    request_id: str = ""
    host: str = ""
    route: str = ""
    cluster: str = ""
    endpoint: str = ""
    model: str | None = None
    model_version: str | None = None
    principal: Principal | None = None
    experiment: str | None = None
    arm: str | None = None
    unit_id: str | None = None
    status: int = 0
    retries: int = 0
    upstream_latency: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None
    prompt_tokens: int | None = None
    """Tokens of an OpenAI request's prompt, as the server's `usage` reported them (once answered)."""
    completion_tokens: int | None = None
    """Tokens of an OpenAI answer, as the server's `usage` reported them; set before the logging
    phase, so a filter can settle what it estimated at admission (rate_limit's token costs)."""
    body: bytes | None = None
    """The whole request body, read before the request phase when a filter of the route needs it."""
    tls_subject: str | None = None
    """The verified client-certificate subject on a TLS listener that asks for client certificates."""
    trace: RequestTrace | None = None
    """The request's trace when the gateway's `tracing:` is on (gateway/core/trace.py), else None."""
    state: dict[str, Any] = field(default_factory=dict)
    """Per-filter slots, keyed by filter name, for state a filter carries between its phases."""
    answer_watchers: list[Callable[[RequestContext, Response], None]] | None = None
    """Who asked, for this request only, to see the whole answer (`watch_answer`)."""

    def watch_answer(self, watcher: Callable[[RequestContext, Response], None]) -> None:
        """Have this one answer shown whole to `watcher(ctx, response)` once it is written to the
        client: the per-request form of `Filter.needs_response_body`, for a filter that studies a
        sample of answers (a request phase calls it after its coin flip; requests it leaves alone
        stream as if the filter were not there). The watcher reads, never rewrites: an upstream
        answer that no response filter reads streams to the client as usual while its bytes are
        copied aside, and the watcher gets the copy after the client has the answer; an answer
        longer than `ANSWER_COPY_MAX_BYTES` is not copied, and the watcher gets it with `body`
        None. (An answer the response filters hold back anyway is shown as they leave it.) A
        server-sent event stream is never shown to a watcher. The watcher runs like a logging
        hook: it must not block, and what it raises is logged, never raised."""
        if self.answer_watchers is None:
            self.answer_watchers = [watcher]
        else:
            self.answer_watchers.append(watcher)

    def cookie(self, name: str) -> str | None:
        """The value of one cookie from the Cookie header, or None."""
        raw = self.headers.get("cookie")
        if not raw:
            return None
        for part in raw.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
        return None

    def query_param(self, name: str) -> str | None:
        """The first value of one query parameter (not percent-decoded), or None."""
        if not self.query:
            return None
        for part in self.query.split("&"):
            key, _, value = part.partition("=")
            if key == name:
                return value
        return None

"""What the data path and plugins may do with a request's trace (`RequestContext.trace`).

`ctx.trace` is None unless the gateway's `tracing:` section is on, so code that adds a span pays
one attribute test when tracing is off. The implementation (OpenTelemetry) is gateway/tracing.py;
this contract lets a plugin add spans without importing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

SpanValue = str | int | float | bool


class AttemptSpan(Protocol):
    """One upstream attempt: a client span, open while the attempt is in flight."""

    @property
    def traceparent(self) -> str:
        """The W3C traceparent naming this attempt, sent upstream with it."""

    def set_status(self, status: int) -> None:
        """The upstream answered with `status`."""

    def fail(self, reason: str) -> None:
        """The attempt failed without an answer (refused, reset, timed out)."""

    def end(self) -> None:
        """The attempt is over (its answer read, dropped, or failed)."""


class RequestTrace(Protocol):
    """The trace of one request: its server span and the children recorded under it."""

    @property
    def exemplar_id(self) -> str | None:
        """The trace id (32 hex digits) when the trace is recorded, else None: the latency
        histogram keeps it as the exemplar of the request's bucket."""

    def span(
        self, name: str, start: float, end: float, attributes: Mapping[str, SpanValue] | None = None
    ) -> None:
        """A finished child span; `start` and `end` are `time.monotonic()` readings."""

    def attempt(self, endpoint: str, number: int) -> AttemptSpan:
        """Open the span of upstream attempt `number` (0 first) to `endpoint`."""

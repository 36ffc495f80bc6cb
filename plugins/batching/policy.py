"""Where a request queues: its priority level and its queue timeout, from config, principal and headers.

Level 1 is served first (Triton's convention). A request's level comes from its principal's tier
(`priority_by_tier`), else `default_priority`. The priority header may move it to a lower priority
(a larger number: a background job stepping aside); raising it needs `trust_priority_header`, since
any caller can send a header.

The queue timeout header may shorten `default_queue_timeout` (with no default, any timeout is
shorter than waiting until sent); lengthening it needs `allow_timeout_override`.
Everything is decided in the constructor, so the per-request methods only read headers.
"""

from __future__ import annotations

import math

from gateway.core.config_types import parse_duration
from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest
from plugins.batching.config import BatchingConfig


class QueuePolicy:
    __slots__ = (
        "_allow_override",
        "_by_tier",
        "_default_level",
        "_default_timeout",
        "_levels",
        "_priority_header",
        "_timeout_header",
        "_trust_header",
    )

    def __init__(self, config: BatchingConfig) -> None:
        self._levels = config.priority_levels
        self._default_level = config.default_level
        self._by_tier = dict(config.priority_by_tier)
        self._priority_header = config.priority_header
        self._trust_header = config.trust_priority_header
        self._default_timeout = config.default_queue_timeout
        self._timeout_header = config.queue_timeout_header
        self._allow_override = config.allow_timeout_override

    def level(self, ctx: RequestContext) -> int:
        """The request's priority level, 1-based (1 first)."""
        level = self._default_level
        principal = ctx.principal
        if principal is not None and principal.tier is not None:
            level = self._by_tier.get(principal.tier, level)
        if self._priority_header is None:
            return level
        raw = ctx.headers.get(self._priority_header)
        if raw is None:
            return level
        asked = self._parse_level(raw)
        return asked if self._trust_header else max(level, asked)

    def timeout(self, ctx: RequestContext) -> float | None:
        """Seconds the request may wait in the queue; None: no limit."""
        raw = ctx.headers.get(self._timeout_header)
        if raw is None:
            return self._default_timeout
        asked = self._parse_timeout(raw.strip())
        if self._allow_override or self._default_timeout is None:
            return asked
        return min(asked, self._default_timeout)

    def _parse_timeout(self, text: str) -> float:
        """A duration with a unit (250ms) or a bare number of seconds, as config durations are."""
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = parse_duration(text)
            except ValueError as exc:
                raise BadRequest(f"{self._timeout_header}: {exc}") from None
        if not (math.isfinite(seconds) and seconds > 0):
            raise BadRequest(f"{self._timeout_header}: a queue timeout must be above zero, like 250ms")
        return seconds

    def _parse_level(self, raw: str) -> int:
        try:
            level = int(raw.strip())
        except ValueError:
            level = 0
        if not 1 <= level <= self._levels:
            raise BadRequest(
                f"{self._priority_header}: {raw!r} is not a priority level; use 1 (first served) "
                f"to {self._levels}"
            )
        return level

"""The batching section of a route's config, validated once when the config is loaded.

Queue semantics follow Triton's dynamic batcher and its model queue policy: a batch goes when it is
full or when its oldest member has waited `max_queue_delay`; queues are bounded; priority level 1 is
served first; a per-request queue timeout either rejects the request or lets it wait behind every
request that has not timed out.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import Duration, StrictModel

# Upper bound on any batch size: far above what one inference call of a real model takes (Triton
# examples stay at 8..256), low enough that a typo such as 100000 is caught at load time.
MAX_BATCH_SIZE_LIMIT = 4096
# In-flight batches per endpoint beyond this stop helping any model server (its executor is full)
# and only turn batching back into a spray of small calls; a larger value is a typo.
MAX_INFLIGHT_PER_ENDPOINT = 64
# Priority levels beyond a handful are not distinguishable in practice; Triton examples use 2..4.
MAX_PRIORITY_LEVELS = 16


class AdaptiveConfig(StrictModel):
    """AIMD control of the batch size cap against a latency objective (see `adaptive.py`)."""

    target_latency: Duration
    """The objective for one batched upstream call; the cap grows while calls stay under it."""
    increase_step: int = Field(default=1, ge=1, le=MAX_BATCH_SIZE_LIMIT)
    """Rows added to the cap after a full batch that met the objective (additive increase)."""
    decrease_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    """The cap becomes this fraction of a batch that missed the objective (multiplicative decrease)."""
    min_batch_size: int = Field(default=1, ge=1, le=MAX_BATCH_SIZE_LIMIT)
    initial_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE_LIMIT)
    """The cap before any measurement; default max_batch_size (static batching until shown slow)."""

    @field_validator("target_latency")
    @classmethod
    def _positive_target(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("target_latency must be above zero")
        return value


class BatchingConfig(StrictModel):
    max_batch_size: int = Field(ge=1, le=MAX_BATCH_SIZE_LIMIT)
    """Most rows (dim 0 summed over members) in one upstream call; a bigger single request goes alone."""
    preferred_batch_sizes: tuple[int, ...] = ()
    """Row counts to aim for when the queue holds enough; empty: as many as fit."""
    max_queue_delay: Duration = 0.002
    """Longest a request waits for others. 2ms: well under typical inference latency (5-50ms), yet
    enough for requests arriving at a few thousand per second to share a batch."""
    max_queue_size: int = Field(default=1024, ge=1)
    """Requests queued per batch queue (model version, cluster, compatible shape) before refusing.
    1024: dozens of full batches; a deeper queue only adds latency a client would rather not wait."""
    queue_full_action: Literal["reject_429", "reject_503"] = "reject_429"
    """The status of overload answers: a full queue, and a queue timeout with action `reject`."""
    priority_levels: int = Field(default=1, ge=1, le=MAX_PRIORITY_LEVELS)
    """Level 1 is served first, as in Triton; within a level, first come first served."""
    default_priority: int | None = None
    """Level of a request no rule assigns; default the middle level, leaving room on both sides."""
    priority_header: str | None = "x-turnout-priority"
    """Header with a requested level; it may only lower the request's priority unless trusted."""
    trust_priority_header: bool = False
    """Let the header raise priority too (only where every caller is trusted)."""
    priority_by_tier: dict[str, int] = Field(default_factory=dict)
    """Level by the authenticated principal's tier."""
    default_queue_timeout: Duration | None = None
    """Longest a request may stay queued; None: until dispatched."""
    queue_timeout_header: str = "x-turnout-queue-timeout"
    allow_timeout_override: bool = False
    """Let the queue timeout header lengthen the default; it may always shorten it."""
    timeout_action: Literal["reject", "delay"] = "reject"
    """`delay`: a timed-out request waits behind every request of its level that has not timed out."""
    max_inflight_batches_per_endpoint: int = Field(default=2, ge=1, le=MAX_INFLIGHT_PER_ENDPOINT)
    """Batches in flight per endpoint of the cluster. 2: one computing while the next travels, so
    the model never idles; beyond that, requests wait in the gateway and merge into larger batches."""
    upstream_binary_tensors: bool = False
    """Send batches with the binary tensor extension (Triton, turnout workers); JSON works everywhere."""
    adaptive: AdaptiveConfig | None = None

    @field_validator("default_queue_timeout")
    @classmethod
    def _positive_timeout(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("default_queue_timeout must be above zero; leave it out for no timeout")
        return value

    @field_validator("priority_header")
    @classmethod
    def _lower_case_priority_header(cls, value: str | None) -> str | None:
        return value.lower() if value else None  # "" or null: no priority header

    @field_validator("queue_timeout_header")
    @classmethod
    def _lower_case_timeout_header(cls, value: str) -> str:
        if not value:
            raise ValueError("queue_timeout_header must name a header")
        return value.lower()

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _sorted_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in value):
            raise ValueError("preferred_batch_sizes must be positive")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _consistent(self) -> BatchingConfig:
        if self.preferred_batch_sizes and self.preferred_batch_sizes[-1] > self.max_batch_size:
            raise ValueError(
                f"preferred_batch_sizes {list(self.preferred_batch_sizes)} exceed "
                f"max_batch_size {self.max_batch_size}"
            )
        levels = self.priority_levels
        if self.default_priority is not None and not 1 <= self.default_priority <= levels:
            raise ValueError(f"default_priority must be between 1 and priority_levels ({levels})")
        for tier, level in self.priority_by_tier.items():
            if not 1 <= level <= levels:
                raise ValueError(f"priority_by_tier: tier '{tier}' has level {level}, outside 1..{levels}")
        if self.adaptive is not None:
            low = self.adaptive.min_batch_size
            start = self.adaptive.initial_batch_size
            if low > self.max_batch_size:
                raise ValueError("adaptive.min_batch_size exceeds max_batch_size")
            if start is not None and not low <= start <= self.max_batch_size:
                raise ValueError(
                    "adaptive.initial_batch_size must lie between min_batch_size and max_batch_size"
                )
        return self

    @property
    def default_level(self) -> int:
        """The level of a request that no tier or header places."""
        if self.default_priority is not None:
            return self.default_priority
        return (self.priority_levels + 1) // 2

"""Options of the response cache: what is cached, for how long, and where."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import ByteSize, Duration, RedisUrl, StrictModel
from plugins._redis_options import redis_options_need_redis
from plugins._request_headers import HeaderName

CallerPart = Literal["principal", "tenant"]
"""Who a cached answer belongs to: the authenticated principal, or the principal's tenant."""

# Options that only the Redis backend reads.
_REDIS_OPTIONS = ("redis_url", "redis_timeout", "redis_retry_interval", "key_prefix")


class CacheConfig(StrictModel):
    """`cache`: answer repeated identical requests from a cache, and merge concurrent ones."""

    # A minute: long enough to absorb bursts of identical requests, short enough that a retrained model's
    # answers show within a minute even without an invalidation.
    ttl: Duration = Field(default=60.0, gt=0, description="How long a stored answer is served.")
    methods: tuple[str, ...] = Field(
        default=("POST", "GET"), min_length=1, description="Request methods whose answers are cached."
    )
    # 10,000 answers and 64 MiB: a small fraction of a gateway's memory, many repeated requests' worth.
    max_entries: int = Field(default=10_000, ge=1, description="The most answers kept in this process.")
    max_bytes: ByteSize = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="The most bytes of answers kept in this process; no single answer larger is stored.",
    )
    backend: Literal["memory", "redis"] = Field(
        default="memory", description="memory: this process only; redis: shared by every gateway."
    )
    redis_url: RedisUrl | None = Field(default=None, description="The Redis to use; default: the gateway's.")
    # 50 ms: far above a healthy Redis round trip, and a bounded price for a cache that cannot answer.
    redis_timeout: Duration = Field(
        default=0.05, gt=0, description="The most a lookup or store waits on Redis (then: a miss)."
    )
    # 1 s: a dead Redis is probed once a second rather than by every request.
    redis_retry_interval: Duration = Field(
        default=1.0, description="After a Redis failure, how long the cache acts as empty before retrying."
    )
    key_prefix: str = Field(default="turnout:cache:", description="Prefix of the Redis keys.")
    vary_headers: tuple[HeaderName, ...] = Field(
        default=(),
        description="Request headers whose values are part of the key (the caller's tenant always is).",
    )
    vary_on: tuple[CallerPart, ...] = Field(
        default=(),
        description="Make answers to authenticated callers cacheable, kept apart per caller: principal "
        "(each principal its own answers), tenant (the principals of one tenant share them), or both. "
        "Without it, a request with credentials (an authenticated principal, Authorization or Cookie) "
        "is answered from the cache and stored only when the answer allows a shared cache to (RFC 9111 "
        "3.5: Cache-Control public, s-maxage or must-revalidate).",
    )
    # turnout_uid: the experiments' own unit cookie. It picks the arm, and the arm is in the key.
    shared_cookies: tuple[str, ...] = Field(
        default=("turnout_uid",),
        description="Cookies that do not identify a caller for caching: a request whose Cookie header "
        "holds only these is not treated as carrying credentials. The default names the experiments' "
        "unit cookie, whose arm is already part of the key.",
    )
    coalesce: bool = Field(
        default=True,
        description="Concurrent identical requests wait for the first one's answer instead of each "
        "going upstream.",
    )
    # 30 s: about the longest an inference upstream is given to answer; a follower should not give up on
    # a leader that is still within its own timeout.
    coalesce_timeout: Duration = Field(
        default=30.0,
        gt=0,
        description="The most a request waits for an identical one in flight before going upstream itself.",
    )
    store_streams: bool = Field(
        default=False,
        description="Also hold back and store server-sent event streams (an LLM's streamed "
        "completion). Off: a stream passes as it arrives and is never stored.",
    )
    store_sampled: bool = Field(
        default=False,
        description="Also look up and store OpenAI completions that sample (temperature above 0, or "
        "none given: OpenAI's default is 1). Off: such requests bypass the cache.",
    )
    canonical_json: bool = Field(
        default=True,
        description="Key a JSON body by its canonical form (sorted keys, no spaces), so that key "
        "order and spacing do not split the cache. Off: the body is hashed as sent, which saves a "
        "parse and a write per request (about 200 µs for 16 KB of floats) when clients always "
        "serialise alike.",
    )

    @field_validator("vary_on")
    @classmethod
    def _each_part_once(cls, parts: tuple[CallerPart, ...]) -> tuple[CallerPart, ...]:
        if len(set(parts)) != len(parts):
            raise ValueError(f"lists a part twice; each of {', '.join(get_args(CallerPart))} at most once")
        return parts

    @field_validator("methods")
    @classmethod
    def _upper_case(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(method.strip().upper() for method in methods))

    @model_validator(mode="after")
    def _redis_options_with_redis(self) -> CacheConfig:
        redis_options_need_redis(self.backend, self.model_fields_set, _REDIS_OPTIONS)
        return self

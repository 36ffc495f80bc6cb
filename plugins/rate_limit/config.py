"""Options of the rate-limit filter: one or more limits, all enforced, and where their state lives."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import Duration, RateValue, RedisUrl, StrictModel
from plugins._redis_options import redis_options_need_redis
from plugins._request_headers import check_header_name

KEY_KINDS = ("principal", "tenant", "route", "model", "client_ip")
HEADER_KEY_PREFIX = "header:"

CostKind = Literal["one", "rows", "tokens"]
# Options that only the Redis backend reads.
_REDIS_OPTIONS = ("redis_url", "redis_timeout", "redis_retry_interval", "on_redis_failure", "key_prefix")


def check_key(value: str) -> str:
    """A limit key: one of KEY_KINDS, or `header:NAME` (the name lower-cased)."""
    key = value.strip()
    if key in KEY_KINDS:
        return key
    if key.lower().startswith(HEADER_KEY_PREFIX):
        return HEADER_KEY_PREFIX + check_header_name(key[len(HEADER_KEY_PREFIX) :])
    raise ValueError(f"unknown key {value!r}: use one of {', '.join(KEY_KINDS)} or header:NAME")


class LimitConfig(StrictModel):
    """One limit: `rate` per `key`, with bursts of up to `burst` units of `cost`."""

    key: str = Field(
        description="What is limited: principal, tenant, route, model, client_ip or header:NAME. A request "
        "without that value (no principal, no such header) is limited by its client IP instead."
    )
    rate: RateValue = Field(description="The sustained rate, like 5/s or 1000/min.")
    burst: int | None = Field(
        default=None, ge=1, description="The most units admitted at once; default: the rate's count."
    )
    cost: CostKind = Field(
        default="one",
        description="Units a request takes: one; rows (the batch size of an OIP v2 or KServe v1 request); "
        "tokens (an estimate for OpenAI-style requests: max_tokens + prompt characters / 4).",
    )
    name: str | None = Field(
        default=None,
        description='The policy name in RateLimit headers and metrics; default "per-<key>".',
    )
    tokenizer: str | None = Field(
        default=None,
        description="With cost tokens: a Hugging Face tokenizer.json, or a tiktoken encoding's ranks "
        "file named after it (cl100k_base.tiktoken), relative to the config file, that counts the "
        "prompt's tokens instead of estimating them (needs the llm extra).",
    )

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        return check_key(value)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        # The name is a structured-field string in the RateLimit headers: printable ASCII, no quote.
        if value is not None and (not value or any(c in '"\\' or not " " <= c <= "~" for c in value)):
            raise ValueError(f"invalid limit name {value!r}: use printable ASCII without quotes")
        return value

    @property
    def policy_name(self) -> str:
        return self.name or "per-" + self.key.replace(":", "-")

    @property
    def effective_burst(self) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate.count))


class RateLimitConfig(StrictModel):
    """`rate_limit`: admit a request only when every limit of the route admits it."""

    limits: tuple[LimitConfig, ...] = Field(min_length=1, description="The limits, all enforced.")
    backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="memory: this process only; redis: shared by every gateway using the same Redis.",
    )
    redis_url: RedisUrl | None = Field(
        default=None, description="The Redis to use; default: the gateway's state backend."
    )
    # 50 ms: well above a healthy Redis round trip (under 1 ms on a LAN), well below what a caller
    # notices; past it the failure policy decides instead.
    redis_timeout: Duration = Field(
        default=0.05, description="The most a decision waits on Redis before applying on_redis_failure."
    )
    # 1 s: recovery is noticed within a second, and a dead Redis is probed once a second, not per request.
    redis_retry_interval: Duration = Field(
        default=1.0, description="After a Redis failure, how long to apply on_redis_failure before retrying."
    )
    # local by default: the limits keep holding (per process) through an outage, and no caller is refused
    # for a failure that is not theirs.
    on_redis_failure: Literal["fail_open", "fail_closed", "local"] = Field(
        default="local",
        description="When Redis fails: admit (fail_open), answer 503 (fail_closed), or enforce the same "
        "limits in this process alone (local).",
    )
    key_prefix: str = Field(default="turnout:rl:", description="Prefix of the Redis keys.")

    @model_validator(mode="after")
    def _distinct_names(self) -> RateLimitConfig:
        names = [limit.policy_name for limit in self.limits]
        if len(set(names)) != len(names):
            raise ValueError(f"two limits share a name ({', '.join(names)}); give them distinct `name`s")
        if self.redis_timeout <= 0:
            raise ValueError("redis_timeout must be above zero")
        redis_options_need_redis(self.backend, self.model_fields_set, _REDIS_OPTIONS)
        return self

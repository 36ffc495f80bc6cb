"""How a cluster picks an endpoint: one small model per algorithm, chosen by ``type``.

``balancer: least_request`` is short for ``balancer: {type: least_request}``; options need the mapping.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.config.models.located import errors_at
from gateway.config.models.types import Integer, PositiveDuration, UrlPath
from gateway.core.config_types import Duration, StrictModel

# Envoy's default for least_request: two random choices already give most of the benefit of
# checking every endpoint ("the power of two choices"), at constant cost.
DEFAULT_CHOICE_COUNT = 2
# linkerd's peak-EWMA decay: long enough to smooth noise, short enough to notice a slow endpoint.
DEFAULT_EWMA_DECAY_S = 10.0
# Envoy's default minimum_ring_size: enough virtual nodes that a few endpoints split keys within a few
# percent of their weights.
DEFAULT_RING_SIZE = 1024

_HASH_ON = re.compile(r"^(?:(?P<source>header|cookie|query):(?P<name>[^\s:]+)|client_ip)$")


class RoundRobinBalancer(StrictModel):
    """Each endpoint in turn, ignoring weights."""

    type: Literal["round_robin"] = Field(default="round_robin", description="The algorithm.")


class WeightedRoundRobinBalancer(StrictModel):
    """Smooth weighted round robin (nginx's): each endpoint in proportion to its weight, interleaved."""

    type: Literal["weighted_round_robin"] = Field(
        default="weighted_round_robin", description="The algorithm."
    )


class RandomBalancer(StrictModel):
    """A random endpoint, weighted by endpoint weight."""

    type: Literal["random"] = Field(default="random", description="The algorithm.")


class LeastRequestBalancer(StrictModel):
    """The endpoint with the fewest requests in flight among `choice_count` random picks."""

    type: Literal["least_request"] = Field(default="least_request", description="The algorithm.")
    choice_count: Integer = Field(
        default=DEFAULT_CHOICE_COUNT, ge=2, description="Endpoints sampled per pick (2 is usually best)."
    )


class PeakEwmaBalancer(StrictModel):
    """Two random picks compared by peak-EWMA latency times requests in flight (linkerd, Finagle)."""

    type: Literal["peak_ewma"] = Field(default="peak_ewma", description="The algorithm.")
    decay: PositiveDuration = Field(
        default=DEFAULT_EWMA_DECAY_S,
        description="Time after which an old latency observation weighs 1/e as much as a fresh one.",
    )


class ConsistentHashBalancer(StrictModel):
    """Requests with the same key go to the same endpoint; few keys move when endpoints change."""

    type: Literal["consistent_hash"] = Field(default="consistent_hash", description="The algorithm.")
    hash_on: str = Field(
        description='What to hash: "header:NAME", "cookie:NAME", "query:NAME" or "client_ip". Requests '
        "without the key get a random endpoint."
    )
    method: Literal["ring", "maglev"] = Field(
        default="ring",
        description="ring: a hash ring with virtual nodes; maglev: Google's lookup table, faster to "
        "pick and more even, with a fixed prime table size.",
    )
    ring_size: Integer = Field(
        default=DEFAULT_RING_SIZE,
        ge=1,
        description="For method ring: the minimum number of points on the ring, shared among endpoints "
        "by weight. More points split keys more evenly and cost memory.",
    )

    @field_validator("hash_on")
    @classmethod
    def _hash_source(cls, value: str) -> str:
        match = _HASH_ON.match(value)
        if match is None:
            raise ValueError(
                f"cannot hash on {value!r}: use header:NAME, cookie:NAME, query:NAME or client_ip"
            )
        if match.group("source") == "header":
            return f"header:{match.group('name').lower()}"
        return value

    @model_validator(mode="after")
    def _ring_size_only_for_ring(self) -> Self:
        if self.method != "ring" and "ring_size" in self.model_fields_set:
            message = "applies only to method: ring (maglev uses its own prime table size)"
            raise errors_at(type(self).__name__, [(("ring_size",), message, self.ring_size)])
        return self


class LeastQueueBalancer(StrictModel):
    """Two random picks compared by the queue depth the endpoints report (x-turnout-queue-depth)."""

    type: Literal["least_queue"] = Field(default="least_queue", description="The algorithm.")


# vLLM's, TGI's and SGLang's names for the same two gauges.
DEFAULT_QUEUE_METRICS = ("vllm:num_requests_waiting", "tgi_queue_size", "sglang:num_queue_reqs")
DEFAULT_KV_METRICS = ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc", "sglang:token_usage")


class LeastLoadBalancer(StrictModel):
    """Two random picks compared by the load LLM servers publish in their Prometheus metrics."""

    type: Literal["least_load"] = Field(default="least_load", description="The algorithm.")
    metrics_path: UrlPath = Field(default="/metrics", description="Where each endpoint serves its metrics.")
    # 250 ms: a queue on an LLM server changes over a few requests' time (seconds), and four scrapes
    # a second per endpoint cost the server next to nothing.
    interval: Duration = Field(
        default=0.25, ge=0.1, le=0.5, description="How often each endpoint's metrics are read (100ms-500ms)."
    )
    queue_metrics: tuple[str, ...] = Field(
        default=DEFAULT_QUEUE_METRICS,
        min_length=1,
        description="Gauges of waiting requests (vLLM's, TGI's and SGLang's by default); summed.",
    )
    kv_cache_metrics: tuple[str, ...] = Field(
        default=DEFAULT_KV_METRICS,
        description="Gauges of KV-cache use from 0 to 1 (vLLM's and SGLang's by default).",
    )
    # 10: a full KV cache makes new work wait about as long as ten queued requests would.
    kv_cache_weight: float = Field(
        default=10.0, ge=0, description="How many waiting requests a full KV cache counts as."
    )
    prefix_affinity: int | None = Field(
        default=None,
        ge=1,
        description="Send requests whose prompts share this many first characters to the same endpoint "
        "(rendezvous hashing among the eligible ones), so the server's prefix cache serves them; "
        "the load then no longer picks.",
    )


AnyBalancer = Annotated[
    RoundRobinBalancer
    | WeightedRoundRobinBalancer
    | RandomBalancer
    | LeastRequestBalancer
    | PeakEwmaBalancer
    | ConsistentHashBalancer
    | LeastQueueBalancer
    | LeastLoadBalancer,
    Field(discriminator="type"),
]

BalancerType = Literal[
    "round_robin",
    "weighted_round_robin",
    "random",
    "least_request",
    "peak_ewma",
    "consistent_hash",
    "least_queue",
    "least_load",
]


def balancer_from_text(value: Any) -> Any:
    """``round_robin`` -> ``{type: round_robin}``."""
    return {"type": value} if isinstance(value, str) else value


BalancerConfig = Annotated[
    AnyBalancer,
    BeforeValidator(balancer_from_text, json_schema_input_type=BalancerType | AnyBalancer),
]
"""A balancer, given by bare type name or as a mapping with options."""

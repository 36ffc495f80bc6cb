"""Consistent hashing: requests with the same key go to the same endpoint while the set is stable, and
a membership change moves few keys (useful for per-endpoint caches, KV caches, sticky sessions).

The key comes from the request: `header:NAME`, `cookie:NAME`, `query:NAME` or `client_ip`. A request
without a key has nothing to stick to and is spread at random. Two tables: a ring (`ring`, exact
minimal remapping) and maglev (`maglev`, even spread, O(1) lookup).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from gateway.core.context import RequestContext
from routing.balancers.base import Balancer, require_endpoints
from routing.balancers.hash_ring import DEFAULT_VNODES_PER_WEIGHT, HashRing, hash_bytes
from routing.balancers.maglev import DEFAULT_TABLE_SIZE, MaglevTable
from routing.endpoints import Endpoint

KeyExtractor = Callable[[RequestContext], str | None]
HashAlgorithm = Literal["ring", "maglev"]


class HashTable(Protocol):
    def lookup(self, key_hash: int) -> Endpoint: ...


def key_extractor(spec: str) -> KeyExtractor:
    """Turns `header:NAME`, `cookie:NAME`, `query:NAME` or `client_ip` into a function of the context.

    An empty value counts as missing: hashing "" would send every such request to one endpoint.
    """
    if spec == "client_ip":
        return lambda ctx: ctx.client_ip or None
    source, sep, name = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"invalid hash key {spec!r}: use header:NAME, cookie:NAME, query:NAME or client_ip")
    if source == "header":
        header = name.lower()
        return lambda ctx: ctx.headers.get(header) or None
    if source == "cookie":
        return lambda ctx: ctx.cookie(name) or None
    if source == "query":
        return lambda ctx: ctx.query_param(name) or None
    raise ValueError(f"invalid hash key source {source!r}: use header, cookie, query or client_ip")


class ConsistentHash:
    __slots__ = ("_endpoints", "_extract", "_n", "_random", "_table")

    def __init__(
        self, endpoints: Sequence[Endpoint], table: HashTable, extract: KeyExtractor, rng: random.Random
    ) -> None:
        self._endpoints = require_endpoints(endpoints)
        self._n = len(self._endpoints)
        self._table = table
        self._extract = extract
        self._random = rng.random

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        key = self._extract(ctx) if ctx is not None else None
        if key is None:
            return self._endpoints[int(self._random() * self._n)]
        return self._table.lookup(hash_bytes(key.encode()))

    def endpoint_for_key(self, key: str) -> Endpoint:
        """The endpoint a key maps to (for tests and the admin API)."""
        return self._table.lookup(hash_bytes(key.encode()))


@dataclass(frozen=True, slots=True)
class ConsistentHashFactory:
    key: str
    algorithm: HashAlgorithm = "ring"
    vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT
    table_size: int = DEFAULT_TABLE_SIZE
    rng: random.Random = field(default_factory=random.Random)
    _extract: KeyExtractor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ("ring", "maglev"):
            raise ValueError(f"unknown consistent hash algorithm {self.algorithm!r}: use ring or maglev")
        # Frozen dataclass: the extractor is decided once here, through object.__setattr__.
        object.__setattr__(self, "_extract", key_extractor(self.key))

    def __call__(self, endpoints: Sequence[Endpoint]) -> Balancer:
        table: HashTable
        if self.algorithm == "maglev":
            table = MaglevTable(endpoints, self.table_size)
        else:
            table = HashRing(endpoints, self.vnodes_per_weight)
        return ConsistentHash(endpoints, table, self._extract, self.rng)

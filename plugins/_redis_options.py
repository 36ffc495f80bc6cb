"""The rule shared by filters that can keep their state in Redis: Redis options need the Redis backend."""

from __future__ import annotations

from collections.abc import Iterable


def redis_options_need_redis(backend: str, given: Iterable[str], redis_options: Iterable[str]) -> None:
    """Refuse Redis options given with another backend. They would be ignored without a word: most
    likely the `backend: redis` line is what is missing, and the state would silently stay in
    this process (limits per process, a cache per process)."""
    given = set(given)
    ignored = [name for name in redis_options if name in given]
    if backend != "redis" and ignored:
        verb = "applies" if len(ignored) == 1 else "apply"
        raise ValueError(f"{', '.join(ignored)} {verb} only to backend: redis (this filter uses {backend})")

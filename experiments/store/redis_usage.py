"""Token usage rows in Redis, shared by every gateway replica on one Redis (`state.backend: redis`).

The rows are the SQLite ledger's (`gateway/usage_ledger.py`): per minute and key (tenant,
principal, model, route), the requests, prompt tokens and completion tokens. Each minute is one
hash whose fields are the key's columns joined by \\x1f, then the count's letter (r, p, c), bumped
with HINCRBY so replicas add their share without coordination; one MULTI/EXEC carries a flush, so
a flush is counted whole or not at all. A sorted set indexes the minutes that have a hash, so a
reader asks only for those.

Keys (prefix P): P m:MINUTE (a minute's hash), P minutes (the index, scored by the minute).
Both expire after `RETENTION_S`: export what billing needs to keep longer.

Calls are blocking (the `redis` package's synchronous client): the gateway writes from a thread
once a second, and `turnout usage` is a command-line read. Each call opens its own connection and
closes it: one connection a second costs less than a client whose lifetime spans threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, cast

from redis import Redis

PREFIX: Final = "turnout:usage:"
# A billing month and its slack: a minute's hash holds a few fields per key, so a month of a busy
# gateway's traffic (43,200 minutes x its keys) stays in the tens of megabytes.
RETENTION_S: Final = 35 * 24 * 3600
# Minutes read per pipeline round trip: a day is 1,440 minutes; one reply stays a few hundred KB.
_READ_PAGE: Final = 500
# Joins the key's columns in a hash field; tenant, principal, model and route names never hold it.
_SEP: Final = "\x1f"
_COUNTS: Final = ("r", "p", "c")

UsageKey = tuple[int, str, str, str, str]
"""(minute, tenant, principal, model, route)."""


def _client(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True)


def add_usage(url: str, rows: Mapping[UsageKey, Sequence[int]], prefix: str = PREFIX) -> None:
    """Add `rows` (requests, prompt tokens, completion tokens per key) to what Redis holds."""
    if rows:
        with _client(url) as client:
            _add(client, rows, prefix)


def _add(client: Redis, rows: Mapping[UsageKey, Sequence[int]], prefix: str) -> None:
    pipe = client.pipeline(transaction=True)
    minutes: set[int] = set()
    for (minute, *columns), counts in rows.items():
        name = f"{prefix}m:{minute}"
        field = _SEP.join(columns) + _SEP
        for letter, count in zip(_COUNTS, counts, strict=True):
            if count:
                pipe.hincrby(name, field + letter, count)
        minutes.add(minute)
    for minute in minutes:
        pipe.expireat(f"{prefix}m:{minute}", minute + RETENTION_S)
    index = prefix + "minutes"
    pipe.zadd(index, {str(minute): minute for minute in minutes})
    pipe.zremrangebyscore(index, "-inf", int(time.time()) - RETENTION_S)
    pipe.expire(index, RETENTION_S)
    pipe.execute()


def read_usage(
    url: str, since_minute: int, prefix: str = PREFIX
) -> list[tuple[str, str, str, str, int, int, int]]:
    """(tenant, principal, model, route, requests, prompt tokens, completion tokens) summed over
    the minutes from `since_minute` on."""
    totals: dict[tuple[str, ...], list[int]] = {}
    with _client(url) as client:
        found = client.zrangebyscore(prefix + "minutes", since_minute, "+inf")
        minutes = cast(list[str], found)
        for start in range(0, len(minutes), _READ_PAGE):
            pipe = client.pipeline(transaction=False)
            for minute in minutes[start : start + _READ_PAGE]:
                pipe.hgetall(f"{prefix}m:{minute}")
            for fields in pipe.execute():
                _add_fields(totals, cast(dict[str, str], fields).items())
    return [(k[0], k[1], k[2], k[3], c[0], c[1], c[2]) for k, c in totals.items()]


def _add_fields(totals: dict[tuple[str, ...], list[int]], fields: Iterable[tuple[str, str]]) -> None:
    for text, value in fields:
        columns, letter = text[:-2], text[-1]
        key = tuple(columns.split(_SEP))
        counts = totals.get(key)
        if counts is None:
            counts = totals[key] = [0, 0, 0]
        counts[_COUNTS.index(letter)] += int(value)

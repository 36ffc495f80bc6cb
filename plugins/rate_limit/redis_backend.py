"""GCRA state in Redis, shared by every gateway that uses the same Redis.

One Lua script decides a request against all of its limits in one round trip: Redis runs a script
alone, so reading every TAT, checking every limit and committing them only when all admit is
atomic across processes, and no limit is charged for a request another limit refuses. The script
takes "now" from Redis's own clock (TIME), so gateways whose clocks disagree still agree on every
bucket. Times inside the script are integer microseconds (exact in a Lua double until the year
2255); TATs are written with %.17g, which reads back as the very same double. Each key expires when
its bucket would be full again, so Redis keeps only the keys that are actually limiting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, cast

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from plugins._redis import RedisGuard
from plugins.rate_limit.gcra import SLACK_S, GcraLimit, LimitState, Verdict, uncharged

_MICROS = 1_000_000  # Redis TIME gives seconds and microseconds; the script works in microseconds

SCRIPT: Final = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local slack = tonumber(ARGV[1])
local reply = {1}
local new_tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local tolerance = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local base = math.max(tonumber(redis.call('GET', KEYS[i])) or now, now)
  local new_tat = base + cost * interval
  local allow_at = new_tat - tolerance
  if allow_at - now > slack then
    reply[1] = 0
    local available = math.floor((now + tolerance - base + slack) / interval)
    table.insert(reply, 0)
    table.insert(reply, math.max(0, available))
    table.insert(reply, base - now)
    table.insert(reply, math.ceil(allow_at - now))
  else
    new_tats[i] = new_tat
    local remaining = math.floor((now + tolerance - new_tat + slack) / interval)
    table.insert(reply, 1)
    table.insert(reply, math.max(0, remaining))
    table.insert(reply, new_tat - now)
    table.insert(reply, 0)
  end
end
if reply[1] == 1 then
  for i = 1, #KEYS do
    local ttl = math.ceil((new_tats[i] - now) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%.17g', new_tats[i]), 'PX', ttl)
  end
end
return reply
"""
_SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()

# Moves one key's TAT by ARGV[1] microseconds (a charge, or a refund when negative) after the request
# was admitted; a refund never reaches before now (a bucket fuller than full).
SETTLE_SCRIPT: Final = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now) + tonumber(ARGV[1])
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
else
  redis.call('DEL', KEYS[1])
end
return 1
"""
_SETTLE_SHA: Final = hashlib.sha1(SETTLE_SCRIPT.encode()).hexdigest()
_FIELDS_PER_LIMIT = 4  # allowed, remaining, reset (µs), retry (µs)


class RedisLimiter:
    """Decides requests against GCRA limits kept in Redis, one script call per decision.

    `key_prefixes[i]` + the request's key value for limit i names that limit's Redis key. Raises
    `RedisUnavailable` (from the guard) when Redis fails or exceeds the budget."""

    __slots__ = ("_guard", "_limit_args", "_limits", "_prefixes")

    def __init__(self, limits: Sequence[GcraLimit], key_prefixes: Sequence[str], guard: RedisGuard) -> None:
        self._limits = tuple(limits)
        self._prefixes = tuple(key_prefixes)
        self._guard = guard
        self._limit_args = tuple(
            (repr(limit.interval * _MICROS), repr(limit.tolerance * _MICROS)) for limit in self._limits
        )

    async def decide(self, values: Sequence[str], costs: Sequence[int]) -> Verdict:
        keys = [prefix + value for prefix, value in zip(self._prefixes, values, strict=True)]
        args: list[str | int] = [repr(SLACK_S * _MICROS)]
        for (interval, tolerance), cost in zip(self._limit_args, costs, strict=True):
            args += (interval, tolerance, cost)

        async def run_script(client: Redis) -> Any:
            try:
                return await cast(Any, client.evalsha(_SCRIPT_SHA, len(keys), *keys, *args))
            except NoScriptError:  # a restarted or flushed Redis: send the script itself once
                return await cast(Any, client.eval(SCRIPT, len(keys), *keys, *args))

        reply = await self._guard.run(run_script)
        return self._verdict(reply, costs)

    async def settle(self, index: int, value: str, units: int) -> None:
        """Charge `units` more to limit `index`'s key `value` (fewer when negative): see
        `MemoryLimiter.settle`."""
        key = self._prefixes[index] + value
        shift = repr(units * self._limits[index].interval * _MICROS)

        async def run_script(client: Redis) -> Any:
            try:
                return await cast(Any, client.evalsha(_SETTLE_SHA, 1, key, shift))
            except NoScriptError:
                return await cast(Any, client.eval(SETTLE_SCRIPT, 1, key, shift))

        await self._guard.run(run_script)

    def _verdict(self, reply: list[int], costs: Sequence[int]) -> Verdict:
        states = []
        for index in range(len(self._limits)):
            start = 1 + index * _FIELDS_PER_LIMIT
            allowed, remaining, reset_us, retry_us = reply[start : start + _FIELDS_PER_LIMIT]
            states.append(LimitState(bool(allowed), int(remaining), reset_us / _MICROS, retry_us / _MICROS))
        if reply[0]:
            return Verdict(True, tuple(states))
        return Verdict(False, tuple(map(uncharged, self._limits, states, costs)))

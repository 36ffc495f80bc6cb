"""GCRA state in this process: one TAT per key in a dict, decided without awaiting anything.

All limits of a request are checked first and committed only when every one admits it, so a limit
that refuses never leaves the others charged. The event loop runs one decision at a time, which
makes check-then-commit atomic without a lock.

Memory stays bounded by the keys that are actually limiting: a key whose TAT has passed holds a
full bucket, the same as a missing key, so such keys are swept whenever the table has doubled since
the last sweep (amortised O(1) per decision).
"""

from __future__ import annotations

from collections.abc import Sequence

from plugins.rate_limit.gcra import GcraLimit, LimitState, Verdict, gcra_step, uncharged

# Below this many keys a sweep is not worth its pass over the table.
_MIN_SWEEP_SIZE = 1024


class MemoryLimiter:
    """Decides requests against GCRA limits with state in a dict (times are time.monotonic())."""

    __slots__ = ("_limits", "_next_sweep", "_only", "_tats")

    def __init__(self, limits: Sequence[GcraLimit]) -> None:
        self._limits = tuple(limits)
        # Most routes have one limit: its decision skips the lists that several limits need.
        self._only = self._limits[0] if len(self._limits) == 1 else None
        self._tats: dict[tuple[int, str], float] = {}
        self._next_sweep = _MIN_SWEEP_SIZE

    def __len__(self) -> int:
        return len(self._tats)

    def decide(self, keys: Sequence[str], costs: Sequence[int], now: float) -> Verdict:
        """The verdict for one request: `keys[i]` and `costs[i]` belong to limit i."""
        tats = self._tats
        only = self._only
        if only is not None:
            key = (0, keys[0])
            new_tat, state = gcra_step(only, tats.get(key, now), now, costs[0])
            if state.allowed:
                tats[key] = new_tat
                if len(tats) >= self._next_sweep:
                    self._sweep(now)
            return Verdict(state.allowed, (state,))  # a refusal charged nothing: nothing to undo
        new_tats: list[float] = []
        states: list[LimitState] = []
        allowed = True
        for index, limit in enumerate(self._limits):
            new_tat, state = gcra_step(limit, tats.get((index, keys[index]), now), now, costs[index])
            new_tats.append(new_tat)
            states.append(state)
            allowed = allowed and state.allowed
        if allowed:
            for index, new_tat in enumerate(new_tats):
                tats[(index, keys[index])] = new_tat
            if len(tats) >= self._next_sweep:
                self._sweep(now)
            return Verdict(True, tuple(states))
        return Verdict(False, tuple(map(uncharged, self._limits, states, costs)))

    def decide_one(self, key: str, cost: int, now: float) -> LimitState:
        """`decide` for a limiter of one limit, without the lists and the verdict."""
        tats = self._tats
        tat_key = (0, key)
        new_tat, state = gcra_step(self._limits[0], tats.get(tat_key, now), now, cost)
        if state.allowed:
            tats[tat_key] = new_tat
            if len(tats) >= self._next_sweep:
                self._sweep(now)
        return state

    def settle(self, index: int, key: str, units: int, now: float) -> None:
        """Charge `units` more to limit `index`'s `key` (fewer when negative) after the request was
        admitted: the difference between a cost estimated at admission and the cost measured after.
        A refund never fills the bucket beyond full; a charge may push the key past its tolerance,
        and its next requests then wait until the debt is paid."""
        tat = self._tats.get((index, key))
        if tat is None or tat < now:
            tat = now
        tat += units * self._limits[index].interval
        if tat > now:
            self._tats[(index, key)] = tat
        else:
            self._tats.pop((index, key), None)

    def _sweep(self, now: float) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._next_sweep = max(_MIN_SWEEP_SIZE, 2 * len(self._tats))

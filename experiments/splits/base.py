"""What every split shares: the assignment it returns, its state, and the gate units pass through.

A split is built once from its config and shared by all requests. `choose(ctx)` is pure and fast: it
reads one immutable state object and never awaits. Controllers and the admin API change a split by
swapping in a new state (one assignment, so a request sees the old state or the new, never a mix).
Every state carries a `revision` (bumped by every change, so replicas keep the newest) and a `phase`
(bumped when the allocation between arms changes: events carry it, and analysis never mixes phases
with different splits).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from experiments.assignment import NamespaceGate
from experiments.config import AssignedConfig
from experiments.units import UnitResolver
from gateway.core.context import RequestContext

# The arm recorded for requests outside the experiment (no unit id, outside the namespace or the
# coverage, experiment stopped): they get the control's cluster and are never analysed.
UNASSIGNED = "unassigned"

Clock = Callable[[], float]


class SplitStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True, slots=True)
class Assignment:
    """One request's place in an experiment. `mirrors` lists (arm, cluster) pairs to copy it to."""

    experiment: str
    arm: str
    cluster: str
    unit_id: str | None
    phase: int
    forced: bool = False
    excluded: bool = False
    set_cookie: str | None = None
    mirrors: tuple[tuple[str, str], ...] = ()

    @property
    def analyzed(self) -> bool:
        """Whether this request counts in the comparison of arms (randomised, not forced)."""
        return not (self.forced or self.excluded)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the gate learned about a request: its unit, a cookie to set, a forced arm, admission."""

    unit_id: str | None
    set_cookie: str | None
    forced_arm: str | None
    admitted: bool


class AssignmentGate:
    """Finds the unit, honours a forced arm for principals with the scope, applies the namespace."""

    __slots__ = ("_arms", "_force_header", "_force_scope", "_namespace", "_units")

    def __init__(
        self,
        units: UnitResolver,
        arms: Collection[str],
        *,
        force_header: str | None,
        force_scope: str,
        namespace: NamespaceGate | None,
    ) -> None:
        self._units = units
        self._arms = frozenset(arms)
        self._force_header = force_header
        self._force_scope = force_scope
        self._namespace = namespace

    def enter(self, ctx: RequestContext) -> Entry:
        unit_id, set_cookie = self._units.resolve(ctx)
        forced = self._forced_arm(ctx)
        if unit_id is None:
            return Entry(None, None, forced, False)
        admitted = self._namespace is None or self._namespace.admits(unit_id)
        return Entry(unit_id, set_cookie, forced, admitted)

    @property
    def namespace(self) -> NamespaceGate | None:
        return self._namespace

    def _forced_arm(self, ctx: RequestContext) -> str | None:
        if self._force_header is None:
            return None
        wanted = ctx.headers.get(self._force_header)
        if wanted is None or wanted not in self._arms:
            return None
        principal = ctx.principal
        return wanted if principal is not None and self._force_scope in principal.scopes else None


class SplitState(Protocol):
    @property
    def revision(self) -> int: ...

    @property
    def phase(self) -> int: ...

    @property
    def status(self) -> SplitStatus: ...

    def to_dict(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=SplitState)


def build_gate(config: AssignedConfig, arms: Collection[str], *, secure_cookie: bool) -> AssignmentGate:
    """The gate of an A/B test or canary, from the fields their configs share."""
    namespace = config.namespace
    return AssignmentGate(
        UnitResolver(config.unit, issue_cookie=config.issues_cookie, secure_cookie=secure_cookie),
        arms,
        force_header=config.force_header,
        force_scope=config.force_scope,
        namespace=NamespaceGate(namespace.name, *namespace.range) if namespace else None,
    )


class InvalidTransition(ValueError):
    """A state change that makes no sense from the current status (resuming a promoted canary)."""


class StatefulSplit(ABC, Generic[S]):
    """The state plumbing of a split: the current state and newest-revision-wins application.

    States are immutable and carry whatever `choose` precomputes from them (an arm layout, a ramp
    threshold), so installing one is a single assignment.
    """

    kind: str = ""

    def __init__(self, name: str, state: S, clock: Clock = time.time) -> None:
        self.name = name
        self._clock = clock
        self._state = state

    @property
    def state(self) -> S:
        return self._state

    @property
    def current_phase(self) -> int:
        return self._state.phase

    def analysed_phase(self) -> tuple[int, dict[str, float]]:
        """The phase an analysis of this split covers, with its arms' expected shares: the current
        one, unless the split says otherwise (a finished canary)."""
        return self._state.phase, self.shares()

    @abstractmethod
    def shares(self) -> dict[str, float]:
        """Each arm's expected share of the traffic now."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._state.to_dict()}

    def apply(self, state: S, *, force: bool = False) -> bool:
        """Adopt `state` if it is newer than the current one (or whenever `force`: the store won a
        race and its state is the truth); False (and no change) otherwise."""
        if state.revision <= self._state.revision and not (force and state != self._state):
            return False
        self._state = state
        return True

    def apply_dict(self, payload: Mapping[str, Any], *, force: bool = False) -> bool:
        """Adopt a persisted state (from `state_dict`) if it is newer, or whenever `force`."""
        if payload.get("kind") != self.kind:
            raise ValueError(f"state of kind {payload.get('kind')!r} given to a {self.kind} split")
        return self.apply(self._state_from_dict(payload), force=force)

    def _swap(self, state: S) -> S:
        """Install a locally made change (the caller bumped the revision)."""
        self._state = state
        return state

    @abstractmethod
    def _state_from_dict(self, payload: Mapping[str, Any]) -> S:
        """Rebuild a state of this split's kind from its `to_dict` form."""


class Split(Protocol):
    """What the data path, controllers and the admin API see of any split."""

    name: str
    kind: str

    def choose(self, ctx: RequestContext) -> Assignment: ...

    def state_dict(self) -> dict[str, Any]: ...

    def apply_dict(self, payload: Mapping[str, Any], *, force: bool = False) -> bool: ...

    def shares(self) -> dict[str, float]: ...

    @property
    def current_phase(self) -> int: ...

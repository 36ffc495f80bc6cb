"""One access rule, compiled to sets, and the check of a caller against it."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.core.context import Principal
from plugins.authz.config import AccessRule


@dataclass(slots=True)
class Shortfall:
    """What a caller lacks: scopes and roles it would need, and attributes that are not allowed."""

    missing: dict[str, list[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.refused)

    def need(self, condition: str, values: list[str]) -> None:
        known = self.missing.get(condition)
        self.missing[condition] = values if known is None else sorted({*known, *values})

    def refuse(self, attribute: str) -> None:
        if attribute not in self.refused:
            self.refused.append(attribute)

    def message(self) -> str:
        parts = [
            f"{name.replace('_', ' ')} needed: {', '.join(values)}" for name, values in self.missing.items()
        ]
        parts.extend(f"{name.replace('_', ' ')} not allowed" for name in self.refused)
        return "access denied: " + "; ".join(parts)


class CompiledRule:
    """An `AccessRule` as frozensets, with what it needs to know about the caller decided once."""

    __slots__ = (
        "_all_scopes",
        "_any_scopes",
        "_any_scopes_sorted",
        "_principals",
        "_roles",
        "_roles_sorted",
        "_tenants",
        "_tls_subjects",
        "has_conditions",
        "needs_principal",
        "needs_tls_subject",
    )

    def __init__(self, rule: AccessRule) -> None:
        self._any_scopes = frozenset(rule.any_scopes)
        self._any_scopes_sorted = sorted(self._any_scopes)
        self._all_scopes = frozenset(rule.all_scopes)
        self._roles = frozenset(rule.roles)
        self._roles_sorted = sorted(self._roles)
        self._tenants = frozenset(rule.tenants)
        self._principals = frozenset(rule.principals)
        self._tls_subjects = frozenset(rule.tls_subjects)
        principal_conditions = (
            self._any_scopes,
            self._all_scopes,
            self._roles,
            self._tenants,
            self._principals,
        )
        self.needs_principal = any(principal_conditions)
        self.needs_tls_subject = bool(self._tls_subjects)
        self.has_conditions = self.needs_principal or self.needs_tls_subject

    def check(self, principal: Principal | None, tls_subject: str | None, shortfall: Shortfall) -> None:
        """Add to `shortfall` what the caller lacks; the caller's identity needs were checked before."""
        if self._tls_subjects and tls_subject not in self._tls_subjects:
            shortfall.refuse("tls_subject")
        if principal is None:
            return
        if self._any_scopes and self._any_scopes.isdisjoint(principal.scopes):
            shortfall.need("any_scopes", self._any_scopes_sorted)
        if self._all_scopes and not self._all_scopes <= principal.scopes:
            shortfall.need("all_scopes", sorted(self._all_scopes - principal.scopes))
        if self._roles and self._roles.isdisjoint(principal.roles):
            shortfall.need("roles", self._roles_sorted)
        if self._tenants and principal.tenant not in self._tenants:
            shortfall.refuse("tenant")
        if self._principals and principal.id not in self._principals:
            shortfall.refuse("principal")

"""Authorization: allow a request only when its caller satisfies the route's (and model's) rules."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter

from gateway.core.context import RequestContext
from gateway.core.errors import Forbidden
from gateway.core.filters import Decision, Filter, Response
from plugins._bearer import PreparedAnswer
from plugins.authz.rule import CompiledRule, Shortfall

DECISIONS = ("allow", "unauthenticated", "forbidden")


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """The rules that apply to one model's requests, and what they need of the caller."""

    rules: tuple[CompiledRule, ...]
    needs_principal: bool
    needs_tls_subject: bool

    @classmethod
    def of(cls, *rules: CompiledRule) -> AccessPlan:
        # Rules without any condition still ask for an authenticated caller: an authz filter
        # never lets anonymous requests through unless a rule names another identity (a certificate).
        conditional = tuple(rule for rule in rules if rule.has_conditions)
        return cls(
            conditional,
            not conditional or any(rule.needs_principal for rule in conditional),
            any(rule.needs_tls_subject for rule in conditional),
        )


class AuthzFilter(Filter):
    """Answers 401 when a rule needs a principal and there is none, 403 naming what the caller lacks."""

    name = "authz"
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True
    __slots__ = ("_by_model", "_count", "_default", "_unauthenticated")

    def __init__(
        self,
        *,
        by_model: dict[str, AccessPlan],
        default: AccessPlan | None,
        unauthenticated: PreparedAnswer,
        counters: dict[str, Counter],
    ) -> None:
        self._by_model = by_model
        self._default = default
        self._unauthenticated = unauthenticated
        self._count = counters

    def on_request(self, ctx: RequestContext) -> Decision:
        model = ctx.model
        plan = self._default if model is None else self._by_model.get(model, self._default)
        principal = ctx.principal
        if plan is None:
            if principal is None:
                return self._deny_unauthenticated()
            self._count["forbidden"].inc()
            return Response.error(
                Forbidden.status, f"model {model or '(none)'} is not allowed here", Forbidden.code
            )
        if plan.needs_principal and principal is None:
            return self._deny_unauthenticated()
        shortfall = Shortfall()
        if plan.needs_tls_subject and ctx.tls_subject is None:
            shortfall.refuse("tls_subject")
        else:
            for rule in plan.rules:
                rule.check(principal, ctx.tls_subject, shortfall)
        if shortfall:
            self._count["forbidden"].inc()
            payload = {
                "error": shortfall.message(),
                "code": Forbidden.code,
                "missing": shortfall.missing,
                "refused": shortfall.refused,
            }
            return Response.json(Forbidden.status, payload)
        self._count["allow"].inc()
        return None

    def _deny_unauthenticated(self) -> Response:
        self._count["unauthenticated"].inc()
        return self._unauthenticated.response()

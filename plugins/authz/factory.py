"""Builds an `AuthzFilter`: each model's rules combined with the route's, once."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._bearer import BearerChallenge
from plugins._metrics import decision_counters
from plugins.authz.config import ANY_MODEL, AuthzConfig
from plugins.authz.filter import DECISIONS, AccessPlan, AuthzFilter
from plugins.authz.rule import CompiledRule

_REALM = "turnout"  # the realm of the gateway's authentication filters' challenges


class AuthzFilterFactory:
    """The `authz` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = AuthzConfig

    def __call__(self, config: AuthzConfig, build: BuildContext) -> Filter:
        route_rule = CompiledRule(config)
        by_model = {
            model: AccessPlan.of(route_rule, CompiledRule(rule))
            for model, rule in config.models.items()
            if model != ANY_MODEL
        }
        if not config.models:
            default: AccessPlan | None = AccessPlan.of(route_rule)
        elif ANY_MODEL in config.models:
            default = AccessPlan.of(route_rule, CompiledRule(config.models[ANY_MODEL]))
        else:
            default = None  # deny by default: a model no rule covers is refused
        return AuthzFilter(
            by_model=by_model,
            default=default,
            unauthenticated=BearerChallenge(_REALM).missing("authentication is required"),
            counters=decision_counters(build.registry, AuthzFilter.name, build.route, DECISIONS),
        )

"""Options of the authorization filter: who may use a route, and each model behind it.

A rule's conditions must all hold; within one list any value is enough, except `all_scopes`, where
every scope is needed. The route's rule (the top-level conditions) applies to every request. When
`models` is given, the request's model must be listed there (or be covered by the "*" entry) and
its rule applies as well: a model nobody listed is refused, which is the point of deny by default.
Where no rule sets any condition (`authz: {}`, or a model listed with `{}`), the request still needs
an authenticated principal: only `tls_subjects` lets a caller without a principal through.
"""

from __future__ import annotations

from pydantic import Field

from gateway.core.config_types import StrictModel

ANY_MODEL = "*"
"""The `models` key whose rule covers every model not listed by name."""


class AccessRule(StrictModel):
    """Conditions on the caller; an empty list places no condition."""

    any_scopes: tuple[str, ...] = Field(default=(), description="The principal holds at least one of these.")
    all_scopes: tuple[str, ...] = Field(default=(), description="The principal holds every one of these.")
    roles: tuple[str, ...] = Field(default=(), description="The principal has at least one of these roles.")
    tenants: tuple[str, ...] = Field(default=(), description="The principal belongs to one of these tenants.")
    principals: tuple[str, ...] = Field(default=(), description="The principal is one of these ids.")
    tls_subjects: tuple[str, ...] = Field(
        default=(), description="The verified client certificate has one of these subjects."
    )


class AuthzConfig(AccessRule):
    """`authz`: allow a route, or some of its models, only to some callers."""

    models: dict[str, AccessRule] = Field(
        default_factory=dict,
        description='Rules per model (the request\'s model name; "*" for any other model). '
        "A model not covered is refused.",
    )

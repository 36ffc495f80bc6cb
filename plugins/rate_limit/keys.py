"""What a limit counts by: each configured key becomes a function of the request, chosen once.

Values are namespaced ("p:" principal, "t:" tenant, ...) so that two kinds of key never share a
bucket by accident. A request without the key's value (no principal, no tenant, no such header) is
counted by its client IP instead: an anonymous caller is still limited, and only with the other
callers from its own address.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.core.context import RequestContext
from plugins.rate_limit.config import HEADER_KEY_PREFIX

KeyReader = Callable[[RequestContext], str]


def by_client_ip(ctx: RequestContext) -> str:
    return "ip:" + ctx.client_ip


def by_principal(ctx: RequestContext) -> str:
    principal = ctx.principal
    return "p:" + principal.id if principal is not None else "ip:" + ctx.client_ip


def by_tenant(ctx: RequestContext) -> str:
    principal = ctx.principal
    if principal is not None and principal.tenant is not None:
        return "t:" + principal.tenant
    return "ip:" + ctx.client_ip


def by_route(ctx: RequestContext) -> str:
    return "r:" + ctx.route


def by_model(ctx: RequestContext) -> str:
    return "m:" + (ctx.model or "")


def by_header(name: str) -> KeyReader:
    def read(ctx: RequestContext) -> str:
        value = ctx.headers.get(name)
        return "h:" + value if value is not None else "ip:" + ctx.client_ip

    return read


_READERS: dict[str, KeyReader] = {
    "principal": by_principal,
    "tenant": by_tenant,
    "route": by_route,
    "model": by_model,
    "client_ip": by_client_ip,
}


def key_reader(key: str) -> KeyReader:
    """The reader for a validated config key (see `config.check_key`)."""
    if key.startswith(HEADER_KEY_PREFIX):
        return by_header(key[len(HEADER_KEY_PREFIX) :])
    return _READERS[key]

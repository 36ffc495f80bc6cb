"""`authz`: allow routes and models only to callers with the right scopes, roles, tenants or certificates."""

from gateway.core.filters import FilterFactory
from plugins.authz.config import AccessRule, AuthzConfig
from plugins.authz.factory import AuthzFilterFactory
from plugins.authz.filter import AuthzFilter

FACTORY: FilterFactory = AuthzFilterFactory()

__all__ = ["FACTORY", "AccessRule", "AuthzConfig", "AuthzFilter", "AuthzFilterFactory"]

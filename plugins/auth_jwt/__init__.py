"""`auth_jwt`: authenticate callers by JSON Web Tokens from one or more trusted issuers."""

from gateway.core.filters import FilterFactory
from plugins.auth_jwt.config import JwtConfig, JwtProvider
from plugins.auth_jwt.factory import JwtFilterFactory
from plugins.auth_jwt.filter import JwtFilter

FACTORY: FilterFactory = JwtFilterFactory()

__all__ = ["FACTORY", "JwtConfig", "JwtFilter", "JwtFilterFactory", "JwtProvider"]

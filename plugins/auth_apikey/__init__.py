"""`auth_apikey`: authenticate callers by API keys stored as SHA-256 digests."""

from gateway.core.filters import FilterFactory
from plugins.auth_apikey.config import ApiKeyConfig, ApiKeyEntry
from plugins.auth_apikey.factory import ApiKeyFilterFactory
from plugins.auth_apikey.filter import ApiKeyFilter

FACTORY: FilterFactory = ApiKeyFilterFactory()

__all__ = ["FACTORY", "ApiKeyConfig", "ApiKeyEntry", "ApiKeyFilter", "ApiKeyFilterFactory"]

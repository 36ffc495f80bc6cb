"""`cors`: cross-origin resource sharing for browser clients, answered at the gateway."""

from gateway.core.filters import FilterFactory
from plugins.cors.config import CorsConfig
from plugins.cors.factory import CorsFilterFactory
from plugins.cors.filter import CorsFilter

FACTORY: FilterFactory = CorsFilterFactory()

__all__ = ["FACTORY", "CorsConfig", "CorsFilter", "CorsFilterFactory"]

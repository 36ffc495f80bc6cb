"""`validate`: body size and media-type rules, and Open Inference Protocol v2 requests checked
against the model's metadata, before the upstream is touched."""

from gateway.core.filters import FilterFactory
from plugins.validate.config import ValidateConfig
from plugins.validate.factory import ValidateFilterFactory
from plugins.validate.filter import BodyRulesFilter, OipValidateFilter
from plugins.validate.metadata import HttpMetadataFetcher, MetadataFetcher, MetadataUnavailable

FACTORY: FilterFactory = ValidateFilterFactory()

__all__ = [
    "FACTORY",
    "BodyRulesFilter",
    "HttpMetadataFetcher",
    "MetadataFetcher",
    "MetadataUnavailable",
    "OipValidateFilter",
    "ValidateConfig",
    "ValidateFilterFactory",
]

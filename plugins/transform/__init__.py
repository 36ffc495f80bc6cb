"""`transform`: rewrite request and response headers, and move fields of JSON request bodies."""

from gateway.core.filters import FilterFactory
from plugins.transform.config import HeaderEdits, TransformConfig
from plugins.transform.factory import TransformFilterFactory
from plugins.transform.filter import BodyTransformFilter, TransformFilter

FACTORY: FilterFactory = TransformFilterFactory()

__all__ = [
    "FACTORY",
    "BodyTransformFilter",
    "HeaderEdits",
    "TransformConfig",
    "TransformFilter",
    "TransformFilterFactory",
]

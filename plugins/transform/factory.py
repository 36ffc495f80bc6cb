"""Builds a transform filter; it reads request bodies only when body renames are configured."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._metrics import decision_counters
from plugins.transform.body import BodyRenamer
from plugins.transform.config import TransformConfig
from plugins.transform.filter import DECISIONS, BodyTransformFilter, TransformFilter
from plugins.transform.headers import RequestHeaderEdits, ResponseHeaderEdits


class TransformFilterFactory:
    """The `transform` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = TransformConfig

    def __call__(self, config: TransformConfig, build: BuildContext) -> Filter:
        request = RequestHeaderEdits(config.request_headers)
        response = ResponseHeaderEdits(config.response_headers)
        counters = decision_counters(build.registry, TransformFilter.name, build.route, DECISIONS)
        if config.request_body_rename:
            return BodyTransformFilter(request, response, BodyRenamer(config.request_body_rename), counters)
        return TransformFilter(request, response, counters)

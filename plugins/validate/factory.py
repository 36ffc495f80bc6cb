"""Builds a validation filter from its config: the body rules, and the metadata source for OIP v2."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._metrics import decision_counters
from plugins.validate.config import ValidateConfig
from plugins.validate.filter import DECISIONS, FILTER_NAME, BodyRulesFilter, OipValidateFilter
from plugins.validate.metadata import HttpMetadataFetcher, SignatureCache
from plugins.validate.signature import ModelSignature, TensorSpec

_log = logging.getLogger("turnout.validate")


class ValidateFilterFactory:
    """The `validate` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = ValidateConfig

    def __call__(self, config: ValidateConfig, build: BuildContext) -> Filter:
        counters = decision_counters(build.registry, FILTER_NAME, build.route, DECISIONS)
        if not config.oip_v2:
            return BodyRulesFilter(
                max_body_bytes=config.max_body_bytes, content_types=config.content_types, counters=counters
            )
        http_fetcher = (
            HttpMetadataFetcher(config.metadata_from, config.metadata_timeout)
            if config.metadata_from is not None
            else None
        )
        return OipValidateFilter(
            max_body_bytes=config.max_body_bytes,
            content_types=config.content_types,
            counters=counters,
            signatures=SignatureCache(http_fetcher, config.metadata_ttl, _log),
            http_fetcher=http_fetcher,
            require_all_inputs=config.require_all_inputs,
            strict=config.strict,
            configured={
                model: ModelSignature(
                    model,
                    {spec.name: TensorSpec(spec.name, spec.datatype, spec.shape) for spec in written.inputs},
                    frozenset(written.outputs),
                )
                for model, written in config.signatures.items()
            },
        )

"""Segment dimensions: what an exposure records for the report's breakdowns, read off the request.

An experiment lists `segments: [tenant, model_version, header:x-region]`; each exposure then carries
one value per dimension: the principal's tenant (set by an authentication filter), the model version
the request named, or the header's value. A request without one records "" (shown as "(none)"). The
values are cut to `MAX_SEGMENT_VALUE` characters, so a header cannot inflate what every exposure
stores. The breakdown itself is `experiments.analysis_segments`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.context import RequestContext

# A tenant, a version or a region fits in far less; longer values are cut, not refused.
MAX_SEGMENT_VALUE = 64
HEADER_PREFIX = "header:"


def segment_values(dimensions: Sequence[str], ctx: RequestContext) -> tuple[tuple[str, str], ...]:
    """(dimension, value) of each dimension for this request ("" where it has none)."""
    values = []
    for dimension in dimensions:
        if dimension == "tenant":
            value = ctx.principal.tenant if ctx.principal is not None else None
        elif dimension == "model_version":
            value = ctx.model_version
        else:
            value = ctx.headers.get(dimension[len(HEADER_PREFIX) :])
        values.append((dimension, (value or "")[:MAX_SEGMENT_VALUE]))
    return tuple(values)

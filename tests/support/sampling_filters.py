"""A third-party filter that studies a random share of answers (`Filter.answer_sample_rate`), as a
user's own monitoring plugin would: `plugin: tests.support.sampling_filters:SAMPLER`."""

from __future__ import annotations

from gateway.core.config_types import StrictModel
from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Filter, Response


class SamplerConfig(StrictModel):
    rate: float = 1.0
    fail: bool = False


class Sampler(Filter):
    """Keeps (status, body) of every answer the data path hands it; `fail` raises instead."""

    def __init__(self, config: SamplerConfig) -> None:
        self.answer_sample_rate = config.rate
        self._fail = config.fail
        self.seen: list[tuple[int, bytes | None]] = []

    def on_sampled_answer(self, ctx: RequestContext, response: Response) -> None:
        if self._fail:
            raise RuntimeError("the sampler broke")
        self.seen.append((response.status, response.body))


class SamplerFactory:
    config_model = SamplerConfig

    def __call__(self, config: SamplerConfig, build: BuildContext) -> Filter:
        return Sampler(config)


SAMPLER = SamplerFactory()

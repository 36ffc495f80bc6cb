"""Third-party filter factories that are wrong in the ways a user's package can be, loaded by import
path (`plugin: tests.support.broken_plugins:NAME`) to check each is a located config error."""

from __future__ import annotations

from gateway.core.config_types import StrictModel
from gateway.core.filters import BuildContext, Filter


class Options(StrictModel):
    value: int = 1


class RaisingFactory:
    """A factory whose own code fails while building."""

    config_model = Options

    def __call__(self, config: Options, build: BuildContext) -> Filter:
        raise RuntimeError("the plugin's settings service is unreachable")


class NotAFilterFactory:
    """A factory that builds something other than a filter."""

    config_model = Options

    def __call__(self, config: Options, build: BuildContext) -> object:
        return {"not": "a filter"}


class ModelIsNotAModel:
    """A factory whose `config_model` is not a pydantic model."""

    config_model = "Options"

    def __call__(self, config: Options, build: BuildContext) -> Filter:
        return Filter()


RAISING = RaisingFactory()
NOT_A_FILTER = NotAFilterFactory()
BAD_MODEL = ModelIsNotAModel()
NOT_CALLABLE = 42

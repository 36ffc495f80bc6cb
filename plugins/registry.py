"""Finding a filter factory by name (built-in) or by import path (third-party), and checking it."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping

from pydantic import BaseModel

from gateway.core.filters import FilterFactory


def resolve_factory(name: str, builtins: Mapping[str, FilterFactory]) -> FilterFactory:
    """The factory for `name`: a built-in filter name, or "package.module:Attribute". Raises
    ValueError with a message fit for a config error."""
    if ":" not in name:
        factory = builtins.get(name)
        if factory is None:
            close = difflib.get_close_matches(name, list(builtins), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(sorted(builtins))
            raise ValueError(f"unknown filter '{name}'{hint}; built-in filters: {known}")
        return factory
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import plugin module '{module_name}': {exc}") from None
    except Exception as exc:
        # The module was found but its own code failed while importing (a bug, a missing setting):
        # the config is still what names it, so it is still a config error, never a traceback.
        raise ValueError(
            f"importing plugin module '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ValueError(f"plugin module '{module_name}' has no attribute '{attribute}'")
    model = getattr(factory, "config_model", None)
    if not callable(factory) or not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(
            f"'{name}' is not a filter factory: it must be callable as factory(config, build) and have "
            "a `config_model` (a pydantic model of its options)"
        )
    return factory  # type: ignore[no-any-return]

"""A route's filter list, read without knowing the filters: each entry becomes a FilterSpec.

Filters (authentication, rate limits, caching...) are plugins; their options are validated later by
the plugins' own check, which reports problems at ``routes[i].filters[j].<config_key>...``.
Three YAML forms are accepted:

    - cors                                       # a filter with default options
    - rate_limit: {limits: [...]}                # one key: the filter name, and its options
    - {plugin: "pkg.mod:Factory", config: {...}} # a third-party filter, by import path
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from gateway.config.models.located import errors_at
from gateway.config.suggest import did_you_mean
from gateway.core.config_types import StrictModel

FILTER_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
IMPORT_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
_FILTER_NAME = re.compile(FILTER_NAME_PATTERN)
_IMPORT_PATH = re.compile(IMPORT_PATH_PATTERN)
_PLUGIN_KEYS = ("plugin", "config")

FILTER_ENTRY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": FILTER_NAME_PATTERN, "description": "a filter with default options"},
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"type": ["object", "null"]},
            "description": "{filter_name: {options}}",
        },
        {
            "type": "object",
            "required": ["plugin"],
            "additionalProperties": False,
            "properties": {
                "plugin": {
                    "type": "string",
                    "pattern": IMPORT_PATH_PATTERN,
                    "description": "pkg.module:Factory",
                },
                "config": {"type": ["object", "null"], "description": "the plugin's options"},
            },
            "description": "a third-party filter loaded by import path",
        },
    ]
}


class FilterSpec(StrictModel):
    """One filter of a route: its name (or import path) and its options, not yet validated."""

    name: str = Field(description='A filter name such as "rate_limit", or an import path "pkg.mod:Factory".')
    config: dict[str, Any] = Field(default_factory=dict, description="The filter's options, as written.")

    @property
    def is_import_path(self) -> bool:
        """True for third-party filters given as ``{plugin: "pkg.mod:Factory"}``."""
        return ":" in self.name

    @property
    def config_key(self) -> str:
        """The YAML key that holds the options: the filter name, or "config" for an import path.

        A check reporting on option ``limits`` of filter j of route i uses the path
        ``("routes", i, "filters", j, spec.config_key, "limits")``.
        """
        return "config" if self.is_import_path else self.name


def filter_from_yaml(value: Any) -> Any:
    """Turn one YAML filter entry into FilterSpec fields, or raise errors located inside the entry."""
    if isinstance(value, FilterSpec):
        return value
    if isinstance(value, str):
        return {"name": _filter_name(value, ()), "config": {}}
    if not isinstance(value, dict) or not value:
        raise ValueError(
            "a filter is a name, or a mapping with one key, the filter name: like rate_limit: {limits: [...]}"
        )
    if "plugin" in value:
        return _plugin_entry(value)
    if len(value) != 1:
        raise ValueError(
            f"a filter entry has exactly one key, the filter name (found {', '.join(map(str, value))}); "
            "start a new list item with '-' for each filter"
        )
    ((name, options),) = value.items()
    return {"name": _filter_name(name, (name,)), "config": _options(options, (name,))}


def _plugin_entry(value: dict[str, Any]) -> dict[str, Any]:
    unknown = [key for key in value if key not in _PLUGIN_KEYS]
    if unknown:
        only = " (a plugin entry has only plugin and config)"
        problems = [
            ((key,), "unknown field" + (did_you_mean(key, _PLUGIN_KEYS) or only), value[key])
            for key in unknown
        ]
        raise errors_at("FilterSpec", problems)
    target = value["plugin"]
    if not isinstance(target, str) or not _IMPORT_PATH.match(target):
        message = 'expected an import path like "my_package.filters:Factory"'
        raise errors_at("FilterSpec", [(("plugin",), message, target)])
    return {"name": target, "config": _options(value.get("config"), ("config",))}


def _filter_name(name: str, path: tuple[str, ...]) -> str:
    if not _FILTER_NAME.match(name):
        message = f"invalid filter name {name!r}: use lower-case letters, digits and '_'"
        raise errors_at("FilterSpec", [(path, message, name)])
    return name


def _options(options: Any, path: tuple[str, ...]) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise errors_at("FilterSpec", [(path, "a filter's options must be a mapping (key: value)", options)])
    return options

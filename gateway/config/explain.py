"""Pydantic validation errors rewritten as plain-language issues at YAML paths.

Pydantic reports ``('clusters', 'up', 'balancer', 'least_request', 'choice_count')`` with "Input
should be greater than or equal to 2"; a person editing YAML wants
``clusters.up.balancer.choice_count: must be at least 2, got 1``. Two things happen here:
- the location is walked against the data that was validated, dropping the parts that are not in
  the file (the discriminator tag of a union, the ``[key]`` marker of a dict key);
- each error type gets a message in plain words, with "did you mean" where a close name exists.

Plugins can reuse `explain_validation_error` to report problems in their own options.
"""

from __future__ import annotations

import re
import types
from collections.abc import Collection, Mapping, Sequence, Sized
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.config.models.located import CONFIG_ERROR_TYPE
from gateway.config.paths import Issue, Path
from gateway.config.suggest import did_you_mean

_QUOTED = re.compile(r"'([^']*)'")
_NOT_FOUND = object()


def explain_validation_error(
    exc: ValidationError,
    *,
    model: type[BaseModel],
    data: Any,
    prefix: Path = (),
    already_reported: Collection[Path] = (),
) -> list[Issue]:
    """One (path, message) per error in `exc`, raised while validating `data` as `model`.

    `prefix` is where `data` sits in the file, so a plugin validating ``spec.config`` passes
    ``("routes", i, "filters", j, spec.config_key)``. Errors about the values at (or inside)
    `already_reported` paths are dropped: those values are known to be wrong for a reason already
    told, such as an unset ${VAR}. Unknown and missing fields are still reported there.
    """
    issues: list[Issue] = []
    for error in exc.errors():
        if _is_spurious(error):
            continue
        location = tuple(error["loc"])
        path = data_path(location, data)
        value = value_at(data, path)
        if error["type"] not in _FIELD_NAME_ERRORS and _under_any(path, already_reported):
            continue
        shown = error["input"] if value is _NOT_FOUND else value
        if error["type"] == "union_tag_invalid" and isinstance(value, Mapping) and "type" in value:
            path = (*path, "type")  # point at the bad type name itself
        issues.append(((*prefix, *path), _message(error, shown, model, location, path)))
    return issues


# Errors about a key rather than its value: still true whatever the value turns out to be.
_FIELD_NAME_ERRORS = frozenset({"extra_forbidden", "missing"})


def _under_any(path: Path, ancestors: Collection[Path]) -> bool:
    return any(path[: len(ancestor)] == ancestor for ancestor in ancestors)


def _is_spurious(error: ErrorDetails) -> bool:
    """Pydantic checks a tuple's min_length on the items that validated, so one bad item in a
    one-item list also yields "too short"; the input was long enough, so only the item's error counts."""
    if error["type"] != "too_short":
        return False
    given, minimum = error["input"], (error.get("ctx") or {}).get("min_length")
    return isinstance(given, Sized) and isinstance(minimum, int) and len(given) >= minimum


def data_path(location: Sequence[str | int], data: Any) -> Path:
    """The part of a pydantic location that names values in `data`.

    Parts that are not keys or indexes of the data are dropped (union tags, "[key]"), except a last
    key of a mapping: that is a missing field, or an unknown one being reported. Keys are also found
    when the model changed their case (header names are lower-cased).
    """
    path: list[str | int] = []
    node = data
    for position, part in enumerate(location):
        last = position == len(location) - 1
        if isinstance(node, Mapping) and isinstance(part, str):
            key = _find_key(node, part)
            if key is not None:
                path.append(key)
                node = node[key]
                continue
            if last and part != "[key]":
                path.append(part)
        elif isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path)


def value_at(data: Any, path: Path) -> Any:
    """The value at `path` in `data`, or _NOT_FOUND."""
    node = data
    for part in path:
        in_mapping = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            return _NOT_FOUND
        node = node[part]
    return node


def _find_key(node: Mapping[Any, Any], part: str) -> str | None:
    if part in node:
        return part
    folded = part.lower()
    return next((key for key in node if isinstance(key, str) and key.lower() == folded), None)


def describe(value: Any) -> str:
    """A value as the YAML author would recognise it."""
    if value is None or value is _NOT_FOUND:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _plain_number(value: Any) -> Any:
    """Bounds of float fields print as 1 rather than 1.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _quote_hint(value: Any) -> str:
    if isinstance(value, bool):
        return " (YAML reads yes/no/on/off/true/false as booleans: put it in quotes to mean the text)"
    if value is None or isinstance(value, int | float):
        return " (put it in quotes to mean the text)"
    return ""


def _message(error: ErrorDetails, value: Any, model: type[BaseModel], location: Path, path: Path) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = describe(value)
    if kind in (CONFIG_ERROR_TYPE, "value_error", "assertion_error"):
        return str(ctx.get("message") or ctx.get("error") or error["msg"])
    if kind == "missing":
        field = location[-1] if location else None
        if isinstance(field, str) and path[-1:] != (field,):
            # The value was written in a short form (balancer: consistent_hash) that has no place
            # for the field; name it, since the path cannot.
            return f"required field {field!r} is missing"
        return "required field is missing"
    if kind == "extra_forbidden":
        key = str(location[-1])
        fields = fields_at(model, location[:-1])
        if fields is None:
            return "unknown field"
        return "unknown field" + (did_you_mean(key, fields) or f" (valid fields: {', '.join(fields)})")
    if kind in ("literal_error", "enum"):
        choices = _QUOTED.findall(str(ctx.get("expected", "")))
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"must be one of {', '.join(choices)}; got {got}{hint}"
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag"))
        choices = _QUOTED.findall(str(ctx.get("expected_tags", "")))
        return f"unknown type {tag!r}" + (did_you_mean(tag, choices) or f" (one of: {', '.join(choices)})")
    if kind == "too_short":
        count = int(ctx.get("min_length", 1))
        noun = ("entry", "entries") if isinstance(value, Mapping) else ("item", "items")
        return f"needs at least {count} {noun[0] if count == 1 else noun[1]}"
    if kind == "union_tag_not_found":
        return "needs a 'type' saying which kind it is"
    simple = _SIMPLE_MESSAGES.get(kind)
    if simple is not None:
        bounds = {key: _plain_number(item) for key, item in ctx.items()}
        return simple.format(got=got, hint=_quote_hint(value) if kind == "string_type" else "", **bounds)
    text = str(error["msg"])
    return text[:1].lower() + text[1:]


# Error types whose message needs only the value and pydantic's context.
_SIMPLE_MESSAGES = {
    "int_type": "expected a whole number, got {got}",
    "int_parsing": "expected a whole number, got {got}",
    "int_from_float": "expected a whole number, got {got}",
    "float_type": "expected a number, got {got}",
    "float_parsing": "expected a number, got {got}",
    "finite_number": "expected a finite number, got {got}",
    "bool_type": "expected true or false, got {got}",
    "bool_parsing": "expected true or false, got {got}",
    "string_type": "expected text, got {got}{hint}",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "{got} does not match the pattern {pattern}",
    "dict_type": "expected a mapping (key: value lines), got {got}",
    "model_type": "expected a mapping (key: value lines), got {got}",
    "model_attributes_type": "expected a mapping (key: value lines), got {got}",
    "list_type": "expected a list, got {got}",
    "tuple_type": "expected a list, got {got}",
    "too_long": "allows at most {max_length} item(s)",
    "greater_than": "must be greater than {gt}, got {got}",
    "greater_than_equal": "must be at least {ge}, got {got}",
    "less_than": "must be less than {lt}, got {got}",
    "less_than_equal": "must be at most {le}, got {got}",
    "none_required": "must be null",
}


def fields_at(model: type[BaseModel], location: Sequence[str | int]) -> list[str] | None:
    """The field names of the model found at a pydantic `location` under `model`, if it is one."""
    node: Any = model
    for part in location:
        node = _step(node, part)
        if node is None:
            return None
    node = _unwrap(node)
    return list(node.model_fields) if _is_model(node) else None


def _step(node: Any, part: str | int) -> Any:
    node = _unwrap(node)
    if _is_model(node):
        field = node.model_fields.get(part) if isinstance(part, str) else None
        return None if field is None else field.annotation
    origin, args = get_origin(node), get_args(node)
    if origin in (list, tuple, Sequence) and isinstance(part, int):
        return args[0] if args else None
    if origin in (dict, Mapping) and isinstance(part, str):
        return args[1] if len(args) == 2 else None
    if origin in (Union, types.UnionType) and isinstance(part, str):
        return next((member for member in args if part in _literal_tags(_unwrap(member))), None)
    return None


def _unwrap(node: Any) -> Any:
    """Strip Annotated and Optional: ``Annotated[X | None, ...]`` -> X."""
    while True:
        origin = get_origin(node)
        if origin is Annotated:
            node = get_args(node)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(node) if arg is not type(None)]
            if len(members) != 1:
                return node
            node = members[0]
        else:
            return node


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _literal_tags(node: Any) -> set[Any]:
    """The Literal values a union member is tagged with (its discriminator field)."""
    if not _is_model(node):
        return set()
    tags: set[Any] = set()
    for field in node.model_fields.values():
        if get_origin(field.annotation) is Literal:
            tags.update(get_args(field.annotation))
    return tags

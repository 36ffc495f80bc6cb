"""Moving fields of a JSON request body from one dotted path to another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core import json_bounds


class BodyNotJson(ValueError):
    """The body cannot be rewritten: it is not JSON, it is JSON beyond `json_bounds`' limits, or a
    destination runs into a non-object."""


def _find_parent(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The object holding the last segment of `path`, or None when the way there is missing."""
    node = document
    for segment in path[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            return None
        node = child
    return node


def _make_parent(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The object that will hold the last segment of `path`, creating missing objects on the way."""
    node = document
    for segment in path[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise BodyNotJson(f"cannot write {'.'.join(path)}: {segment} is not an object")
        node = child
    return node


class BodyRenamer:
    """Applies the configured moves, in order, to one body."""

    __slots__ = ("_moves",)

    def __init__(self, renames: Mapping[str, str]) -> None:
        self._moves = tuple((tuple(old.split(".")), tuple(new.split("."))) for old, new in renames.items())

    def apply(self, body: bytes) -> bytes | None:
        """The rewritten body, or None when nothing moved (the body is then forwarded as it came)."""
        try:
            document = json_bounds.loads(body)
        except orjson.JSONDecodeError:
            raise BodyNotJson("the request body is not valid JSON") from None
        except json_bounds.JsonTooComplex as error:
            raise BodyNotJson(error.message) from None
        if not isinstance(document, dict):
            return None  # only objects have fields to move
        moved = False
        for old, new in self._moves:
            source = _find_parent(document, old)
            if source is None or old[-1] not in source:
                continue
            _make_parent(document, new)[new[-1]] = source.pop(old[-1])
            moved = True
        return orjson.dumps(document) if moved else None

"""Field paths inside a config file, and how they are written in error messages and mapped to lines.

A path is the chain of mapping keys and list indexes from the top of the file to one value:
``("routes", 0, "backend", "cluster")`` is written ``routes[0].backend.cluster``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

Path = tuple[str | int, ...]
"""Mapping keys and list indexes from the top of the document down to one value."""

Issue = tuple[Path, str]
"""A problem with one value: where it is and what is wrong, in plain language."""

LineMap = Mapping[Path, int]
"""The 1-based line on which each value of a document starts."""

# Keys made only of these characters read unambiguously after a dot; anything else (a cluster named
# "fraud.v1", a key with spaces) is quoted so the path can be read back without guessing.
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: Path) -> str:
    """``("clusters", "up", "endpoints", 0)`` -> ``clusters.up.endpoints[0]``."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            parts.append(f".{part}" if parts else part)
        else:
            parts.append(f"[{part!r}]")
    return "".join(parts)


def line_for(lines: LineMap, path: Path) -> int:
    """The line of the value at `path`, or of its nearest ancestor that the file contains.

    A missing field has no line of its own; the mapping it belongs in is the place to add it.
    """
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return 1


@dataclass(frozen=True, slots=True)
class LocatedIssue:
    """An issue pinned to a line of a file, ready to print."""

    line: int
    path: Path
    message: str

    def format(self, filename: str) -> str:
        """``config/x.yaml:14: routes[0].backend.cluster: unknown cluster 'fraud-v3' (...)``."""
        if self.path:
            return f"{filename}:{self.line}: {format_path(self.path)}: {self.message}"
        return f"{filename}:{self.line}: {self.message}"

"""`--models NAME[:VERSION],...`: which models and versions of a repository one worker serves.

Models and versions left out are invisible to the worker, as if they were not in the repository, so
two workers can share one repository and serve different versions (risk v1 here, v2 there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class SelectionError(ValueError):
    """A `--models` value that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class ModelSelection:
    versions: Mapping[str, frozenset[int] | None] | None = field(default=None)
    """Model name -> the versions served (None: all of them); None as a whole: every model."""

    @classmethod
    def parse(cls, text: str | None) -> ModelSelection:
        """'risk:1,risk:2,diabetes' -> risk versions 1 and 2, every version of diabetes."""
        if not text or not text.strip():
            return cls()
        chosen: dict[str, frozenset[int] | None] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, version_text = item.partition(":")
            if not name:
                raise SelectionError(f"--models: {item!r} has no model name")
            if not sep:
                chosen[name] = None
                continue
            if not version_text.isdigit():
                raise SelectionError(f"--models: version {version_text!r} of {name!r} is not a number")
            if name in chosen and chosen[name] is None:
                continue  # every version is already chosen
            chosen[name] = (chosen.get(name) or frozenset()) | {int(version_text)}
        return cls(chosen)

    def includes(self, name: str, version: int) -> bool:
        if self.versions is None:
            return True
        if name not in self.versions:
            return False
        versions = self.versions[name]
        return versions is None or version in versions

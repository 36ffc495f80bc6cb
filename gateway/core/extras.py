"""The optional parts of turnout, installed as extras, and the error that names a missing one.

`pip install turnout` is the gateway with its filters, experiments and the reports' statistics.
The rest comes as extras (pyproject.toml): `workers` (the inference workers' model runtimes and
gRPC), `reports` (the report's plots), `all` (both). A part whose extra is missing fails where it
starts, with the command that installs it, rather than with the import error of a library the
user never asked for.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence


class MissingExtra(ImportError):
    """An optional part of turnout was used without the extra that installs it."""

    def __init__(self, extra: str, part: str, missing: Sequence[str]) -> None:
        super().__init__(
            f"{part} need the '{extra}' extra: pip install 'turnout[{extra}]' "
            f"(not installed: {', '.join(missing)})"
        )
        self.extra = extra


def require_extra(extra: str, part: str, modules: Sequence[str]) -> None:
    """Raise MissingExtra unless every module in `modules` can be imported. Found, not imported:
    the part imports what it uses when it needs it."""
    missing = [module for module in modules if not _installed(module)]
    if missing:
        raise MissingExtra(extra, part, missing)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (google for google.protobuf) is missing
        return False

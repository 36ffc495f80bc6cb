"""The exceptions of loading and building a config.

    ConfigError    a config file that cannot be used: one located line per problem
    BuildError     one config value the runtime could not be built from, with its field path

The loader raises ConfigError. Building the runtime raises BuildError; the load-time preflight builds
the same objects and turns each BuildError into a located ConfigError line, so a config that loads
also builds.
"""

from __future__ import annotations

from gateway.config.paths import Path, format_path


class ConfigError(Exception):
    """A config file that cannot be used, with every problem found in it.

    `errors` holds one line per problem, ``FILE:LINE: PATH: MESSAGE``, in file order; ``str()`` is those
    lines joined with newlines, ready to print.
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(self.errors)


class BuildError(Exception):
    """A value of a valid config that the runtime cannot be built from (a factory refused its options,
    a file it names does not load). `path` is the field to blame, `message` says why in one line."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        self.message = one_line(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}" if self.path else self.message

    def unlocated(self, filename: str) -> str:
        """``FILE: PATH: MESSAGE`` for when the file's lines are no longer at hand."""
        return f"{filename}: {self}"


def one_line(text: str) -> str:
    """Foreign messages (PyYAML's, ssl's) can span lines with a caret drawing; an error line cannot."""
    return " ".join(text.split())


def describe_exception(exc: BaseException) -> str:
    """A ValueError's message is written for the user; anything else is a bug, so name its type."""
    text = one_line(str(exc))
    if type(exc) is ValueError and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

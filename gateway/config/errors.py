"""The one exception the loader raises."""

from __future__ import annotations


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

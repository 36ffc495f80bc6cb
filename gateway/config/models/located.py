"""Errors that a model validator raises at a precise field path.

A plain ValueError from a validator lands on the model as a whole; raising a ValidationError with
locations lets a cross-field rule point at the one field to fix (``admin.port``, not ``admin``), and
report several problems at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.config.paths import Path

CONFIG_ERROR_TYPE = "config"
"""The error type of these errors: their message is already plain language, to be shown as it is."""


def errors_at(title: str, problems: Sequence[tuple[Path, str, Any]]) -> ValidationError:
    """A ValidationError with one error per (path relative to the validated value, message, input)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                # The message goes in the context, not the template, so braces in it stay literal.
                type=PydanticCustomError(CONFIG_ERROR_TYPE, "{message}", {"message": message}),
                loc=path,
                input=value,
            )
            for path, message, value in problems
        ],
    )

"""``${VAR}`` and ``${VAR:-default}`` substitution in string values.

``${VAR}`` needs VAR to be set; ``${VAR:-default}`` uses the default when VAR is unset or empty (the
shell's and Docker Compose's meaning). ``$${`` writes a literal ``${``. A ``$`` not followed by ``{``
is left alone, so regexes such as ``^/v1/$`` need no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# One alternation so a single left-to-right scan sees escapes before references:
#   $${          an escaped, literal "${"
#   ${...}       a reference (the body is parsed below)
#   ${           an opening with no closing brace
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?$", re.DOTALL)


class InterpolationError(ValueError):
    """One or more references in a value could not be resolved; `problems` says why, one per item."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`text` with every reference replaced from `env`; raises InterpolationError listing every
    reference that could not be resolved."""
    if "${" not in text:
        return text
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group("body")
        if body is None:
            problems.append("'${' is not closed: write ${NAME} or ${NAME:-default} (or $${ for a literal ${)")
            return token
        reference = _BODY.match(body)
        if reference is None:
            problems.append(f"cannot read ${{{body}}}: write ${{NAME}} or ${{NAME:-default}}")
            return token
        name, default = reference.group("name"), reference.group("default")
        value = env.get(name)
        if default is not None:
            return value if value else default
        if value is None:
            problems.append(
                f"environment variable {name} is not set and has no default "
                f"(set it, or write ${{{name}:-value}} to give one)"
            )
            return token
        return value

    result = _TOKEN.sub(replace, text)
    if problems:
        raise InterpolationError(problems)
    return result

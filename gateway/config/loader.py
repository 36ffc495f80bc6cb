"""Load a config file: YAML with lines -> ${VAR} substitution -> typed models -> checks -> errors.

Every stage collects problems instead of stopping at the first, so one run shows everything to fix.
Later stages (plugins, experiments) add their own rules as checks: functions that read the validated
config and yield (path, message); the loader pins each path to its line like any other error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path as FilePath

from pydantic import ValidationError

from gateway.config.errors import ConfigError
from gateway.config.explain import describe, explain_validation_error
from gateway.config.models import GatewayConfig
from gateway.config.paths import Issue, LocatedIssue, Path, line_for
from gateway.config.yaml_tree import YamlDocument, read_yaml

ConfigCheck = Callable[[GatewayConfig], Iterable[Issue]]
"""A rule over a whole valid config: yields (field path, message) for each problem it finds."""

_SECTIONS = ", ".join(GatewayConfig.model_fields)


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    checks: Sequence[ConfigCheck] = (),
) -> GatewayConfig:
    """Read and validate the config file at `path`; raises ConfigError listing every problem.

    Error lines name the file as `path` was given. `env` supplies ${VAR} values (default: os.environ).
    """
    filename = os.fspath(path)
    try:
        text = FilePath(filename).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{filename}: not UTF-8 text (byte {exc.start}: {exc.reason})"]) from None
    except OSError as exc:
        raise ConfigError([f"{filename}: cannot read the file: {exc.strerror or exc}"]) from None
    return load_config_text(text, filename, env=env, checks=checks)


def load_config_text(
    text: str,
    filename: str,
    *,
    env: Mapping[str, str] | None = None,
    checks: Sequence[ConfigCheck] = (),
) -> GatewayConfig:
    """Validate config `text`; `filename` is only used to name the file in error lines."""
    document = read_yaml(text, os.environ if env is None else env)
    issues = list(document.issues)
    config = _validate(document, issues) if document.readable else None
    if config is not None and not issues:
        for check in checks:
            issues.extend(_locate(document, path, message) for path, message in check(config))
    if issues or config is None:
        raise ConfigError(_format(issues, filename))
    return config


def _validate(document: YamlDocument, issues: list[LocatedIssue]) -> GatewayConfig | None:
    data = document.data
    if data is None:
        issues.append(
            LocatedIssue(1, (), f"the file is empty: expected a mapping with the sections {_SECTIONS}")
        )
        return None
    if not isinstance(data, dict):
        message = f"the top level must be a mapping of sections ({_SECTIONS}), not {describe(data)}"
        issues.append(LocatedIssue(line_for(document.lines, ()), (), message))
        return None
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        # A value whose ${VAR} could not be substituted was already reported; what the model says
        # about the raw "${VAR}" text would only repeat it.
        explained = explain_validation_error(
            exc, model=GatewayConfig, data=data, already_reported=document.unresolved
        )
        issues.extend(_locate(document, path, message) for path, message in explained)
        return None


def _locate(document: YamlDocument, path: Path, message: str) -> LocatedIssue:
    return LocatedIssue(line_for(document.lines, path), tuple(path), message)


def _format(issues: list[LocatedIssue], filename: str) -> list[str]:
    """One line per issue in file order (stable for issues on the same line), duplicates dropped."""
    lines = [issue.format(filename) for issue in sorted(issues, key=lambda issue: issue.line)]
    return list(dict.fromkeys(lines))

"""YAML that would crash a naive loader (a character YAML forbids, nesting deep enough to exhaust
Python's stack, directly or through aliases) is a located config error like any syntax error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config_text
from gateway.config.yaml_tree import MAX_DEPTH

HEAD = """\
clusters:
  up: {endpoints: [127.0.0.1:9]}
routes:
  - name: all
    match: {prefix: /}
    backend: {cluster: up}
"""
TOO_DEEP = f"the document nests deeper than {MAX_DEPTH} levels"


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "gw.yaml", env={})
    return caught.value.errors


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1f", "\ufffe"])
def test_a_character_yaml_forbids_is_a_located_error(character: str) -> None:
    assert _errors(HEAD + f"# a comment with {character} in it\n") == [
        f"gw.yaml:7: invalid YAML: the character #x{ord(character):04x} is not allowed in YAML"
    ]


def test_a_forbidden_character_far_into_a_long_file_is_located() -> None:
    """The reader checks the text in buffers: past the first one the error comes from elsewhere."""
    padding = "".join(f"# line {n}\n" for n in range(3000))
    assert _errors(HEAD + padding + "x: \x01\n") == [
        "gw.yaml:3007: invalid YAML: the character #x0001 is not allowed in YAML"
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[" * 5000 + "]" * 5000, 1),  # flow style, on one line
        ("a:\n" + "".join("  " * n + "b:\n" for n in range(1, 2000)), MAX_DEPTH + 1),  # block style
        ("{" * 5000, 1),  # not even closed: the depth is found before the syntax error
    ],
    ids=["flow", "block", "unclosed"],
)
def test_nesting_deeper_than_the_limit_is_a_located_error(text: str, line: int) -> None:
    assert _errors(text) == [f"gw.yaml:{line}: {TOO_DEEP}"]


def test_nesting_through_aliases_is_bounded_too() -> None:
    """Each anchor is shallow in the text; expanded, the last one nests 40 + 40 + 10 levels."""
    text = (
        "a: &a " + "[" * 40 + "1" + "]" * 40 + "\n"
        "b: &b " + "[" * 40 + "*a" + "]" * 40 + "\n"
        "c: " + "[" * 10 + "*b" + "]" * 10 + "\n"
    )
    assert _errors(text) == [f"gw.yaml:1: {TOO_DEEP}"]


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    """A value nested exactly MAX_DEPTH levels (the top mapping counted) reaches the models, which
    then say what is wrong with it: the limit refuses nothing a config could mean."""
    deep = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    errors = _errors(HEAD + f"extra: {deep}\n")
    assert errors and all(TOO_DEEP not in error for error in errors), errors
    assert errors[0].startswith("gw.yaml:7: extra: unknown field"), errors


@pytest.mark.parametrize("value", [".nan", ".inf", "1" + "0" * 400 + "s"])
def test_a_duration_that_is_not_a_finite_number_is_refused(value: str) -> None:
    """YAML reads .nan and .inf as floats, and 400 digits overflow to inf; a NaN timer makes the
    event loop raise when the timer is armed, long after the config was accepted."""
    text = HEAD.replace(
        "up: {endpoints: [127.0.0.1:9]}", f"up: {{endpoints: [127.0.0.1:9], timeouts: {{request: {value}}}}}"
    )
    assert _errors(text) == [
        "gw.yaml:2: clusters.up.timeouts.request: a duration must be a finite number of seconds"
    ]

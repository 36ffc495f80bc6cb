"""Reading YAML with lines: safe_load's values, every value's line, and the traps it avoids."""

from __future__ import annotations

import datetime

from gateway.config.paths import Path, format_path, line_for
from gateway.config.yaml_tree import MAX_VALUES, read_yaml


def test_values_match_safe_load_and_lines_are_recorded() -> None:
    document = read_yaml(
        "a: 1\nb:\n  c: [x, 2.5, true, null]\n  d:\n    - e: f\n      g: 2024-01-02\nh: |\n  text\n",
        {},
    )
    assert document.issues == []
    assert document.data == {
        "a": 1,
        "b": {"c": ["x", 2.5, True, None], "d": [{"e": "f", "g": datetime.date(2024, 1, 2)}]},
        "h": "text\n",
    }
    assert document.lines[()] == 1
    assert document.lines[("a",)] == 1
    assert document.lines[("b",)] == 2
    assert document.lines[("b", "c", 3)] == 3
    assert document.lines[("b", "d")] == 4
    assert document.lines[("b", "d", 0)] == 5
    assert document.lines[("b", "d", 0, "g")] == 6
    assert document.lines[("h",)] == 7


def test_a_scalar_on_the_next_line_has_its_own_line() -> None:
    document = read_yaml("key:\n  value\nnested:\n  inner: 1\n", {})
    assert document.lines[("key",)] == 2  # the value, where the text to fix is
    assert document.lines[("nested",)] == 3  # a mapping is pointed at by its key


def test_keys_are_always_text() -> None:
    document = read_yaml("on: [502]\n1: one\nyes: no\nnull: x\n", {})
    assert document.data == {"on": [502], "1": "one", "yes": False, "null": "x"}


def test_duplicate_keys_are_reported() -> None:
    document = read_yaml("a: 1\nb: 2\na: 3\n", {})
    assert [(issue.line, issue.path, issue.message) for issue in document.issues] == [
        (3, ("a",), "duplicate key (first given on line 1)")
    ]


def test_anchors_aliases_and_merge_keys() -> None:
    document = read_yaml(
        "base: &base {interval: 2s, timeout: 1s}\nhealth:\n  <<: *base\n  timeout: 500ms\nagain: *base\n", {}
    )
    assert document.issues == []
    assert document.data["health"] == {"interval": "2s", "timeout": "500ms"}
    assert document.data["again"] == {"interval": "2s", "timeout": "1s"}
    assert (
        read_yaml("a: 1\n<<: {b: 2}\na: 3\n", {}).issues[0].message == "duplicate key (first given on line 1)"
    )


def test_recursive_alias_is_an_issue_not_a_hang() -> None:
    document = read_yaml("a: &loop\n  - *loop\n", {})
    assert [(issue.line, issue.path) for issue in document.issues] == [(1, ("a", 0))]  # the anchor's line
    assert "refers to a value that contains it" in document.issues[0].message


def test_alias_bombs_are_stopped() -> None:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 7)]
    document = read_yaml("\n".join(lines) + "\n", {})
    assert not document.readable
    assert f"more than {MAX_VALUES} values" in document.issues[0].message


def test_unsupported_tags_are_issues() -> None:
    document = read_yaml("a: !!set {x, y}\nb: !!python/name:os.system x\n", {})
    messages = [(issue.line, issue.message) for issue in document.issues]
    assert messages[0] == (1, "the YAML tag !!set is not supported here; use a plain mapping")
    assert messages[1][0] == 2 and "could not determine a constructor" in messages[1][1]


def test_unresolved_references_are_remembered() -> None:
    document = read_yaml("a: ${MISSING}\nb: ${SET}\n", {"SET": "yes"})
    assert document.data == {"a": "${MISSING}", "b": "yes"}
    assert document.unresolved == {("a",)}
    assert [issue.line for issue in document.issues] == [1]


def test_paths_print_like_the_yaml() -> None:
    assert format_path(("routes", 0, "backend", "cluster")) == "routes[0].backend.cluster"
    assert format_path(("clusters", "fraud.v1", "endpoints", 2)) == "clusters['fraud.v1'].endpoints[2]"
    assert format_path(()) == ""


def test_missing_paths_map_to_the_nearest_ancestor() -> None:
    lines: dict[Path, int] = {(): 1, ("a",): 2, ("a", "b"): 5}
    assert line_for(lines, ("a", "b", "c", 0)) == 5
    assert line_for(lines, ("a", "x")) == 2
    assert line_for(lines, ("z",)) == 1

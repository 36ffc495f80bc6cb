"""Read YAML into plain Python values while remembering the line of every value.

``yaml.safe_load`` throws the line numbers away, so this composes the node graph and builds the values
itself: scalars are constructed by PyYAML's safe constructor (so ``8080`` is an int and ``true`` a
bool, exactly as safe_load reads them), ``${VAR}`` references are substituted in string values, and
each value's path is mapped to the line it starts on.

Two deliberate departures from safe_load, both to catch mistakes rather than hide them:
- mapping keys are always the key's text: YAML 1.1 would read the key ``on:`` (a field of
  RetryConfig) as the boolean true, and ``1:`` as an int;
- a key repeated in one mapping is an error, where safe_load silently keeps the last one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.config.interpolation import InterpolationError, interpolate
from gateway.config.paths import LocatedIssue, Path

# A real gateway config has hundreds of values, a large one a few thousand. Aliases can make a small
# file expand exponentially ("billion laughs"); stopping far above any real config bounds that cost.
MAX_VALUES = 100_000
# A real config nests about ten levels (a filter's options inside a route inside the list of routes).
# PyYAML's composer, this reader and the models all recurse once per level, so a file nested a few
# hundred levels deep would exhaust Python's stack; 64 is far above any config and far below that.
MAX_DEPTH = 64

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(slots=True)
class YamlDocument:
    """The values of one YAML document, the line of each, and what went wrong while reading it."""

    data: Any = None
    lines: dict[Path, int] = field(default_factory=dict)
    issues: list[LocatedIssue] = field(default_factory=list)
    unresolved: set[Path] = field(default_factory=set)
    """Paths whose value still holds an unresolved ${...}: errors about their content are noise."""
    readable: bool = True
    """False when the text is not YAML at all (a syntax error): `data` is then meaningless."""


def read_yaml(text: str, env: Mapping[str, str]) -> YamlDocument:
    """Parse one YAML document; syntax errors and value problems come back as located issues."""
    document = YamlDocument()
    try:
        # The reader checks every character when it is made: a control character raises here.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        document.readable = False
        document.issues.append(_reader_issue(text, exc))
        return document
    try:
        too_deep = _depth_issue(text)
        if too_deep is not None:
            document.readable = False
            document.issues.append(too_deep)
            return document
        root = loader.get_single_node()
        if root is not None:
            document.lines[()] = root.start_mark.line + 1
            document.data = _TreeBuilder(loader, env, document).build(root, ())
    except yaml.MarkedYAMLError as exc:
        document.readable = False
        document.issues.append(_syntax_issue(exc))
    except yaml.reader.ReaderError as exc:  # met while reading on, past the reader's first buffer
        document.readable = False
        document.issues.append(_reader_issue(text, exc))
    except yaml.YAMLError as exc:
        document.readable = False
        document.issues.append(LocatedIssue(1, (), f"invalid YAML: {exc}"))
    finally:
        loader.dispose()
    return document


def _depth_issue(text: str) -> LocatedIssue | None:
    """The first collection nested deeper than MAX_DEPTH, found on the parser's flat event stream
    before the recursive composer sees the text. (Aliases can nest deeper once expanded: the tree
    builder checks that.)"""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark is not None else 1
                return LocatedIssue(line, (), _too_deep())
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return None


def _too_deep() -> str:
    return f"the document nests deeper than {MAX_DEPTH} levels"


def _reader_issue(text: str, exc: yaml.reader.ReaderError) -> LocatedIssue:
    """A character YAML does not allow (a control character, say), on the line where it is."""
    line = text.count("\n", 0, max(exc.position, 0)) + 1
    return LocatedIssue(line, (), f"invalid YAML: the character #x{exc.character:04x} is not allowed in YAML")


def _syntax_issue(exc: yaml.MarkedYAMLError) -> LocatedIssue:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    # PyYAML's own wording reads "<context>, <problem>": "while scanning a simple key, could not find
    # expected ':'".
    words = ", ".join(part for part in (exc.context, exc.problem) if part) or "cannot parse"
    return LocatedIssue(line, (), f"invalid YAML: {words}")


class _TreeBuilder:
    """Walks the composed node graph once, building values and recording lines and issues."""

    def __init__(self, loader: yaml.SafeLoader, env: Mapping[str, str], document: YamlDocument) -> None:
        self._loader = loader
        self._env = env
        self._document = document
        self._open: set[int] = set()
        self._count = 0

    def build(self, node: Node, path: Path) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            raise yaml.YAMLError(
                f"the document expands to more than {MAX_VALUES} values (are aliases nested too deeply?)"
            )
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if len(path) >= MAX_DEPTH:  # only aliases get here: the text itself was checked before
            self._document.readable = False
            self._document.issues.append(LocatedIssue(node.start_mark.line + 1, (), _too_deep()))
            return None
        if id(node) in self._open:
            self._issue(node, path, "this alias refers to a value that contains it")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
        finally:
            self._open.discard(id(node))
        self._issue(node, path, f"unsupported YAML node {type(node).__name__}")
        return None

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self._issue(
                node, path, f"the YAML tag {_short_tag(node.tag)} is not supported here; use a plain mapping"
            )
        own_pairs = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        # Expand "<<" merge keys in place, as safe_load does: the merged pairs come first, so the
        # mapping's own keys override them, and only the own keys can be duplicates.
        self._loader.flatten_mapping(node)
        merged_pairs = len(node.value) - own_pairs
        result: dict[str, Any] = {}
        own_lines: dict[str, int] = {}
        for position, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, ScalarNode):
                self._issue(key_node, path, "a mapping key must be plain text, not a list or mapping")
                continue
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            child = (*path, key)
            if position >= merged_pairs:
                if key in own_lines:
                    message = f"duplicate key (first given on line {own_lines[key]})"
                    self._document.issues.append(LocatedIssue(key_line, child, message))
                own_lines.setdefault(key, key_line)
            # A scalar's own line is where its text is; a nested mapping or list is best pointed at by
            # its key, since its content may start on the next line.
            if isinstance(value_node, ScalarNode):
                self._document.lines[child] = value_node.start_mark.line + 1
            else:
                self._document.lines[child] = key_line
            result[key] = self.build(value_node, child)
        return result

    def _sequence(self, node: SequenceNode, path: Path) -> list[Any]:
        if node.tag != _SEQ_TAG:
            self._issue(
                node, path, f"the YAML tag {_short_tag(node.tag)} is not supported here; use a plain list"
            )
        items: list[Any] = []
        for index, item_node in enumerate(node.value):
            child = (*path, index)
            self._document.lines[child] = item_node.start_mark.line + 1
            items.append(self.build(item_node, child))
        return items

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        try:
            value = self._loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:  # e.g. a date like 2024-13-45 raises ValueError
            problem = getattr(exc, "problem", None) or str(exc)
            self._issue(node, path, f"cannot read this value: {problem}")
            return node.value
        if not isinstance(value, str):
            return value
        try:
            return interpolate(value, self._env)
        except InterpolationError as exc:
            for problem in exc.problems:
                self._issue(node, path, problem)
            self._document.unresolved.add(path)
            return value

    def _issue(self, node: Node, path: Path, message: str) -> None:
        self._document.issues.append(LocatedIssue(node.start_mark.line + 1, path, message))


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:set`` -> ``!!set``, as the author wrote it."""
    return tag.replace("tag:yaml.org,2002:", "!!", 1)

"""Route matching: the first rule, in config order, whose every condition holds for a request.

Each rule is compiled once into a path test (exact, prefix or regex, held as a kind code and a value so
the loop tests it inline) and, only when the rule has other conditions, one predicate over method,
host, headers and model. The common router, one prefix "/" rule or a few prefixes, costs a few
`startswith` calls per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from gateway.core.errors import InvalidPath
from gateway.core.paths import normalize_path
from routing.model_path import ModelPathParser, model_from_path, path_parser

T = TypeVar("T")

HeaderMatchKind = Literal["exact", "regex", "present", "absent"]


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A condition on one request header; `name` is lower-case, `value` is needed by exact and regex.
    A regex is searched for anywhere in the value (`re.search`); anchor it with ^ and $ for all of it."""

    name: str
    kind: HeaderMatchKind = "present"
    value: str | None = None

    def __post_init__(self) -> None:
        if self.name != self.name.lower():
            raise ValueError(f"header match names are lower-case: {self.name!r}")
        if self.kind in ("exact", "regex") and self.value is None:
            raise ValueError(f"header match {self.kind!r} on {self.name!r} needs a value")


def _require_normalized(rule: str, path: str) -> None:
    """Requests are matched on their normalised path: a path or prefix in another form never matches."""
    try:
        normal = normalize_path(path, keep_escaped_slashes=True)
    except InvalidPath as exc:
        raise ValueError(f"route {rule!r}: {exc.message}: {path!r}") from None
    if normal != path:
        raise ValueError(f"route {rule!r}: paths are matched normalised, so write {normal!r}, not {path!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule(Generic[T]):
    """One route's conditions and what to do with a matching request (`payload`).

    At most one of `path` (exact), `prefix` and `regex` (searched for in the path, as `re.search`,
    which is what the config documents; anchor with ^ and $ to match all of it); none matches any path.
    `host` is exact or `*.suffix` (at least one label before the suffix), case-insensitive.
    """

    name: str
    payload: T
    path: str | None = None
    prefix: str | None = None
    regex: str | None = None
    methods: frozenset[str] | None = None
    host: str | None = None
    headers: tuple[HeaderMatch, ...] = ()
    model: str | None = None
    version: str | None = None
    protocol: str = "http"
    """The upstream protocol, which decides how the path names a model (`routing/model_path.py`)."""

    @property
    def reads_body_model(self) -> bool:
        """An OpenAI route that matches on the model: the model is the JSON body's `model`."""
        return self.protocol == "openai" and self.model is not None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.path, self.prefix, self.regex)) > 1:
            raise ValueError(f"route {self.name!r}: give at most one of path, prefix and regex")
        for value in (self.path, self.prefix):
            if value is not None and not value.startswith("/"):
                raise ValueError(f"route {self.name!r}: a path or prefix starts with '/', got {value!r}")
            if value is not None:
                _require_normalized(self.name, value)


class RouteMatch(Generic[T]):
    """The rule that matched, and the model and version named by the path (if any).

    `pending`: the first rule whose path fits reads the model from the body, which has not been
    read; match again with the body's model (`body_read=True`) to know the route."""

    __slots__ = ("model", "path", "payload", "pending", "rule", "version")

    def __init__(
        self, rule: RouteRule[T], path: str, model: str | None, version: str | None, pending: bool = False
    ) -> None:
        self.rule = rule
        self.payload = rule.payload
        self.path = path
        self.model = model
        self.version = version
        self.pending = pending


# Path test kinds, compared by identity in the match loop.
_ANY, _EXACT, _PREFIX, _REGEX = 0, 1, 2, 3

# method, normalized host, headers, model, version
Predicate = Callable[[str, str, Mapping[str, str], str | None, str | None], bool]
# kind, exact path or prefix ("" otherwise), compiled regex (or None), predicate, rule, and how the
# rule's protocol reads the model from the path, and whether the model is the body's instead
_CompiledRule = tuple[
    int, str, "re.Pattern[str] | None", Predicate | None, RouteRule[T], ModelPathParser, bool
]


def normalize_host(host: str) -> str:
    """Lower-case, without port or trailing dot: `API.Example.com:8080` -> `api.example.com`."""
    host = host.lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    return host[:-1] if host.endswith(".") else host


def _host_predicate(pattern: str) -> Callable[[str], bool]:
    pattern = normalize_host(pattern)
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return lambda host: host.endswith(suffix) and len(host) > len(suffix)
    return lambda host: host == pattern


def _header_predicate(match: HeaderMatch, rule: str) -> Callable[[Mapping[str, str]], bool]:
    name, value = match.name, match.value
    if match.kind == "present":
        return lambda headers: name in headers
    if match.kind == "absent":
        return lambda headers: name not in headers
    if match.kind == "exact":
        return lambda headers: headers.get(name) == value
    if value is None:  # HeaderMatch already refuses this; the test narrows the type
        raise ValueError(f"route {rule!r}: regex header match on {name!r} needs a value")
    pattern = _compile(value, rule)

    def regex_matches(headers: Mapping[str, str]) -> bool:
        found = headers.get(name)
        return found is not None and pattern.search(found) is not None

    return regex_matches


def _compile(regex: str, rule: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ValueError(f"route {rule!r}: invalid regex {regex!r}: {exc}") from None


def _predicate(rule: RouteRule[T]) -> Predicate | None:
    """One function testing everything but the path, or None when the path is the only condition."""
    methods = frozenset(m.upper() for m in rule.methods) if rule.methods is not None else None
    host_ok = _host_predicate(rule.host) if rule.host is not None else None
    header_checks = tuple(_header_predicate(h, rule.name) for h in rule.headers)
    model, version = rule.model, rule.version
    if methods is None and host_ok is None and not header_checks and model is None and version is None:
        return None

    def matches(
        method: str, host: str, headers: Mapping[str, str], found_model: str | None, found_version: str | None
    ) -> bool:
        if methods is not None and method not in methods:
            return False
        if model is not None and found_model != model:
            return False
        if version is not None and found_version != version:
            return False
        if host_ok is not None and not host_ok(host):
            return False
        return all(check(headers) for check in header_checks)

    return matches


class Router(Generic[T]):
    __slots__ = ("_compiled", "_first_parser", "_needs_host", "body_models", "rules")

    def __init__(self, rules: Sequence[RouteRule[T]]) -> None:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError("route names must be unique")
        self.rules = tuple(rules)
        compiled: list[_CompiledRule[T]] = []
        for rule in self.rules:
            predicate = _predicate(rule)
            # Each rule reads the model from the path as its upstream protocol lays paths out.
            parser = path_parser(rule.protocol)
            body = rule.reads_body_model
            if rule.path is not None:
                compiled.append((_EXACT, rule.path, None, predicate, rule, parser, body))
            elif rule.prefix is not None:
                compiled.append((_PREFIX, rule.prefix, None, predicate, rule, parser, body))
            elif rule.regex is not None:
                compiled.append((_REGEX, "", _compile(rule.regex, rule.name), predicate, rule, parser, body))
            else:
                compiled.append((_ANY, "", None, predicate, rule, parser, body))
        self._compiled = tuple(compiled)
        # The path is read before the loop with the first rule's parser, and again only where a
        # matching rule's protocol differs: once per request when every rule shares a protocol.
        self._first_parser: ModelPathParser = compiled[0][5] if compiled else model_from_path
        # Host normalization costs a lower() and a split; skip it when no rule looks at the host.
        self._needs_host = any(rule.host is not None for rule in self.rules)
        # The models OpenAI routes take by the body's `model`, in config order, each once: what
        # `GET /v1/models` lists.
        self.body_models: tuple[str, ...] = tuple(
            dict.fromkeys(rule.model for rule in self.rules if rule.reads_body_model and rule.model)
        )

    def match(
        self,
        method: str,
        path: str,
        host: str,
        headers: Mapping[str, str],
        body_model: str | None = None,
        body_read: bool = False,
    ) -> RouteMatch[T] | None:
        """The first matching rule. `path` is the normalised path (`gateway/core/paths.py`, done by
        the listener); `method` is compared as sent (methods are case-sensitive); `headers` must
        answer lower-case names (RequestContext.headers does).

        A rule that reads the model from the body (an OpenAI route with a model) answers a pending
        match until `body_read` is true; `body_model` is then the body's `model` (None: it had none)."""
        parser = self._first_parser
        model, version = parser(path)
        if self._needs_host:
            host = normalize_host(host)
        for kind, text, pattern, predicate, rule, rule_parser, by_body in self._compiled:
            if kind == _PREFIX:
                if not path.startswith(text):
                    continue
            elif kind == _EXACT:
                if path != text:
                    continue
            elif pattern is not None and pattern.search(path) is None:
                continue
            if by_body:
                if not body_read:
                    return RouteMatch(rule, path, None, None, pending=True)
                if predicate is None or predicate(method, host, headers, body_model, None):
                    return RouteMatch(rule, path, body_model, None)
                continue
            if rule_parser is not parser:
                parser = rule_parser
                model, version = parser(path)
            if predicate is None or predicate(method, host, headers, model, version):
                return RouteMatch(rule, path, model, version)
        return None

    def match_named(
        self,
        method: str,
        path: str,
        host: str,
        headers: Mapping[str, str],
        model: str | None,
        version: str | None,
    ) -> RouteMatch[T] | None:
        """As `match`, for a request that names its model itself rather than in the path (a gRPC
        call carries it in the request message): `model` and `version` are given, not parsed."""
        if self._needs_host:
            host = normalize_host(host)
        for kind, text, pattern, predicate, rule, *_ in self._compiled:
            if kind == _PREFIX:
                if not path.startswith(text):
                    continue
            elif kind == _EXACT:
                if path != text:
                    continue
            elif pattern is not None and pattern.search(path) is None:
                continue
            if predicate is None or predicate(method, host, headers, model, version):
                return RouteMatch(rule, path, model, version)
        return None


def rewrite_prefix(match: RouteMatch[T], replacement: str) -> str:
    """The matched path with the rule's prefix (or its whole exact path) replaced.

    A slash is not doubled where the replacement ends with one and the rest starts with one, so
    prefix "/api" with replacement "/" turns "/api/infer" into "/infer", not "//infer".
    """
    rule = match.rule
    matched = rule.prefix if rule.prefix is not None else rule.path
    if matched is None:
        raise ValueError(f"route {rule.name!r}: only prefix and exact path routes can rewrite a prefix")
    rest = match.path[len(matched) :]
    if replacement.endswith("/") and rest.startswith("/"):
        rest = rest[1:]
    rewritten = replacement + rest
    return rewritten if rewritten.startswith("/") else "/" + rewritten

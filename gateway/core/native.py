"""Which data-path modules run compiled, the record of their build, and the switch back to sources.

The modules below are compiled with mypyc at install time when a C compiler is available
(`setup.py`); the pure-Python modules behave the same, at more CPU per request (bench/RESULTS.md).
Python prefers a compiled module to its source, which would hide an edit to a source until the
next build. So the build records a SHA-256 of each source it compiled (`native_build.json`, beside
this file), and when a source no longer matches its record, or TURNOUT_PURE_PYTHON is set,
`prefer_sources` makes every one of them load from source: all or none, because compiled modules
reach into each other's objects directly. Content, not file times: pip keeps no file times when
it installs a wheel, and extracts a compiled module before or after its source as it pleases.

    python gateway/core/native.py    # the compiled modules' sources (the Makefile reads them)
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

# The per-request path: listener and upstream HTTP, the proxy state machine, the request context,
# routes, clusters and filter chains as the proxy reads them, endpoint sets and every balancer,
# the breaker and retry budget, and the metrics and access-log line it records. (routing/router.py and
# routing/balancers/base.py stay Python: mypyc compiles neither generic dataclasses nor
# runtime-checkable protocols.)
COMPILED_MODULES = (
    "gateway/access_log.py",
    "gateway/backend.py",
    "gateway/cluster.py",
    "gateway/core/context.py",
    "gateway/core/paths.py",
    "gateway/filter_chain.py",
    "gateway/http/exchange.py",
    "gateway/http/headers.py",
    "gateway/http/listener.py",
    "gateway/http/pool.py",
    "gateway/http/upstream.py",
    "gateway/observability.py",
    "gateway/proxy.py",
    "gateway/request_phase.py",
    "gateway/response_phase.py",
    "gateway/route.py",
    "gateway/upstream_attempt.py",
    "gateway/upstream_request.py",
    "routing/affinity.py",
    "routing/balancers/consistent_hash.py",
    "routing/balancers/hash_ring.py",
    "routing/balancers/least_queue.py",
    "routing/balancers/least_request.py",
    "routing/balancers/maglev.py",
    "routing/balancers/peak_ewma.py",
    "routing/balancers/random_choice.py",
    "routing/balancers/round_robin.py",
    "routing/balancers/weighted_round_robin.py",
    "routing/endpoint_set.py",
    "routing/endpoints.py",
    "routing/model_path.py",
    "routing/resilience/circuit_breaker.py",
    "routing/resilience/retry.py",
    "routing/slow_start.py",
)

# Written by setup.py next to this file in the installed package (or the checkout, for an editable
# install): {"compiled": {source: sha256}} after a build, {"compiled": {}, "why_not": ...} after a
# build that left the data path as plain Python.
BUILD_RECORD = "gateway/core/native_build.json"

_ROOT = Path(__file__).resolve().parents[2]
STALE_BUILD = "sources changed since they were compiled"
NOT_COMPILED = "not compiled at install"


def module_name(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_build_record(root: Path, sources: Path, why_not: str | None = None) -> Path:
    """Record the build under `root`: each listed source in `sources` with its digest, or, with
    `why_not`, that nothing was compiled and why. Called by setup.py."""
    if why_not is None:
        record: dict[str, object] = {
            "compiled": {source: source_digest(sources / source) for source in COMPILED_MODULES}
        }
    else:
        record = {"compiled": {}, "why_not": why_not}
    path = root / BUILD_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def read_build_record(root: Path = _ROOT) -> tuple[dict[str, str], str | None]:
    """The digests of the sources last compiled, and why nothing was compiled when that is so. A
    missing or unreadable record names no source: a compiled module without one counts as stale."""
    try:
        record = json.loads((root / BUILD_RECORD).read_text())
        compiled = {str(source): str(digest) for source, digest in record["compiled"].items()}
        why_not = record.get("why_not")
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return {}, None
    return compiled, None if why_not is None else str(why_not)


def compiled_modules() -> list[str]:
    """The data-path modules imported so far that run as compiled extensions."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = []
    for source in COMPILED_MODULES:
        module = sys.modules.get(module_name(source))
        if module is not None and str(getattr(module, "__file__", "")).endswith(suffixes):
            compiled.append(module_name(source))
    return compiled


def data_path_mode(root: Path = _ROOT) -> str:
    """The data path's mode, "compiled" or "pure Python (why)": where the proxy module loads (or
    loaded) from, found without importing it. The gateway logs it once it listens."""
    module = sys.modules.get("gateway.proxy")
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        spec = importlib.util.find_spec("gateway.proxy")
        origin = spec.origin if spec is not None else None
    if str(origin).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return "compiled"
    finder = next((f for f in sys.meta_path if isinstance(f, _SourceFinder)), None)
    if finder is not None:
        return f"pure Python ({finder.reason})"
    _, why_not = read_build_record(root)
    return f"pure Python ({NOT_COMPILED}: {why_not})" if why_not else f"pure Python ({NOT_COMPILED})"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the listed modules' sources ahead of the compiled modules beside them."""

    def __init__(self, sources: dict[str, Path], reason: str) -> None:
        self.sources = sources
        self.reason = reason

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def prefer_sources(root: Path = _ROOT, environ: Mapping[str, str] = os.environ) -> str | None:
    """Load the data path from source when asked to or when its build is stale; why, or None.
    Called by the `gateway` package before any of these modules can be imported."""
    if any(isinstance(finder, _SourceFinder) for finder in sys.meta_path):
        return "already loading from source"
    if environ.get("TURNOUT_PURE_PYTHON"):
        reason = "TURNOUT_PURE_PYTHON is set"
    else:
        stale = stale_modules(root)
        if not stale:
            return None
        reason = f"{STALE_BUILD}: {', '.join(stale)}"
    sources = {module_name(source): root / source for source in COMPILED_MODULES}
    sys.meta_path.insert(0, _SourceFinder(sources, reason))
    return reason


def stale_modules(root: Path = _ROOT) -> list[str]:
    """Compiled modules whose source differs from the one their build recorded (or that have no
    record at all): the build no longer matches them."""
    built = [source for source in COMPILED_MODULES if _has_extension(root / source)]
    if not built:
        return []
    digests, _ = read_build_record(root)
    return [
        source
        for source in built
        if (root / source).exists() and digests.get(source) != source_digest(root / source)
    ]


def _has_extension(source: Path) -> bool:
    return any(
        source.with_name(source.stem + suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


if __name__ == "__main__":
    print(" ".join(COMPILED_MODULES))

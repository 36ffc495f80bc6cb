"""Which data-path modules run compiled, and the switch back to their sources.

The modules below are compiled with mypyc at install time when a C compiler is available
(`setup.py`); the pure-Python modules behave the same, at about a third more CPU per request.
Python prefers a compiled module to its source, which would hide an edit to a source until the
next build. So when any source is newer than its compiled module, or TURNOUT_PURE_PYTHON is set,
`prefer_sources` makes every one of them load from source: all or none, because compiled modules
reach into each other's objects directly.

    python gateway/core/native.py    # the compiled modules' sources (the Makefile reads them)
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

# The per-request path: listener and upstream HTTP, the proxy state machine, the request context,
# routes, clusters and filter chains as the proxy reads them, endpoint sets and every balancer,
# the breaker and retry budget, and the metrics it records. (routing/router.py and
# routing/balancers/base.py stay Python: mypyc compiles neither generic dataclasses nor
# runtime-checkable protocols.)
COMPILED_MODULES = (
    "gateway/cluster.py",
    "gateway/core/context.py",
    "gateway/filter_chain.py",
    "gateway/http/exchange.py",
    "gateway/http/headers.py",
    "gateway/http/listener.py",
    "gateway/http/pool.py",
    "gateway/http/upstream.py",
    "gateway/observability.py",
    "gateway/proxy.py",
    "gateway/route.py",
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

_ROOT = Path(__file__).resolve().parents[2]
STALE_BUILD = "sources changed since they were compiled"


def module_name(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


def compiled_modules() -> list[str]:
    """The data-path modules imported so far that run as compiled extensions."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = []
    for source in COMPILED_MODULES:
        module = sys.modules.get(module_name(source))
        if module is not None and str(getattr(module, "__file__", "")).endswith(suffixes):
            compiled.append(module_name(source))
    return compiled


def data_path_mode() -> str:
    """Whether the data path runs "compiled" or as "pure Python": where the proxy module loads (or
    loaded) from, found without importing it."""
    module = sys.modules.get("gateway.proxy")
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        spec = importlib.util.find_spec("gateway.proxy")
        origin = spec.origin if spec is not None else None
    compiled = str(origin).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return "compiled" if compiled else "pure Python"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the listed modules' sources ahead of the compiled modules beside them."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources

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
    sys.meta_path.insert(0, _SourceFinder(sources))
    return reason


def stale_modules(root: Path = _ROOT) -> list[str]:
    """Sources edited after their compiled module was built (the build no longer matches them)."""
    stale = []
    for source in COMPILED_MODULES:
        path = root / source
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            built = path.with_name(path.stem + suffix)
            if built.exists() and path.exists() and path.stat().st_mtime > built.stat().st_mtime:
                stale.append(source)
    return stale


if __name__ == "__main__":
    print(" ".join(COMPILED_MODULES))

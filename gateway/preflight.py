"""Everything `turnout run` builds from a config, built at load time with nothing opened.

The config models check one value at a time. Some problems only show once the gateway is put
together: a `rate_limit` with `backend: redis` and no Redis URL anywhere, a keys file that does not
parse, a plugin whose factory raises, a certificate that does not load, an event store in a directory
that cannot exist. `preflight` builds those parts with the very functions the gateway uses (a scratch
metrics registry stands in for the gateway's), but starts none of them: nothing connects, binds a
port, writes a file or spawns a task. Each failure becomes a (field path, message) issue that the
loader pins to its line. `turnout validate`, `turnout run` and every reload load through it, so what
one accepts the others build.

Parts are built one by one first, so a file with several problems shows them all; when every part
builds, the whole runtime is built once more, exactly as `turnout run` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from experiments.config import CanaryConfig, ShadowConfig
from experiments.controller import CanaryController
from experiments.outbound import OutboundRequest
from experiments.shadow import ShadowMirror
from experiments.splits import build_split
from experiments.splits.canary import CanarySplit
from experiments.store import open_store
from gateway.config import GatewayConfig
from gateway.config.errors import BuildError, describe_exception
from gateway.config.paths import Issue
from gateway.core.filters import BuildContext
from gateway.experiments_runtime import needs_experiments
from gateway.filters_config import build_filter, filter_path
from gateway.observability import GatewayMetrics
from gateway.runtime import build_cluster, build_runtime
from gateway.tls import build_tls_context

# The first bytes of every SQLite 3 database file (the format's documented header string).
_SQLITE_HEADER = b"SQLite format 3\x00"
# Where the access log may go without naming a file.
_STANDARD_STREAMS = ("stdout", "stderr")


def preflight(config: GatewayConfig, base_dir: Path) -> list[Issue]:
    """The problems that would stop the gateway from being built from `config`; empty when it builds.

    `base_dir` is the config file's directory (filter files and TLS material are relative to it)."""
    issues = [
        *_filters(config, base_dir),
        *_clusters(config),
        *_experiments(config),
        *_tls(config, base_dir),
        *_access_log(config),
        *_event_store(config),
    ]
    if issues:
        return issues
    return list(_runtime(config, base_dir))


def _scratch_metrics() -> GatewayMetrics:
    """A registry like the gateway's, the gateway's own families included: a plugin whose metric
    clashes with one of them fails here as it would in `turnout run`."""
    return GatewayMetrics(CollectorRegistry(auto_describe=True))


def _filters(config: GatewayConfig, base_dir: Path) -> Iterator[Issue]:
    registry = _scratch_metrics().registry
    for i, route in enumerate(config.routes):
        build = BuildContext(
            route=route.name,
            cluster=route.backend.cluster or "",
            registry=registry,
            redis_url=config.state.redis_url,
            base_dir=str(base_dir),
        )
        for j, spec in enumerate(route.filters):
            try:
                build_filter(spec, build, filter_path(i, j))
            except BuildError as exc:
                yield exc.path, exc.message


def _clusters(config: GatewayConfig) -> Iterator[Issue]:
    for name, cluster in config.clusters.items():
        try:
            build_cluster(name, cluster, None)
        except Exception as exc:
            yield ("clusters", name), f"cannot build: {describe_exception(exc)}"


def _experiments(config: GatewayConfig) -> Iterator[Issue]:
    """Each experiment's split, and a canary's controller or a shadow's mirror, as
    `ExperimentsService.apply` builds them (over a store that is made, not opened)."""
    secure = config.listen.tls is not None
    store = open_store(redis_url=config.state.redis_url, sqlite_path=config.state.sqlite_path)
    for name, experiment in config.experiments.items():
        try:
            split = build_split(name, experiment, secure_cookie=secure)
            if isinstance(experiment, CanaryConfig) and isinstance(split, CanarySplit):
                CanaryController(name, experiment, split, store)
            if isinstance(experiment, ShadowConfig):
                ShadowMirror(name, experiment, _no_send)
        except Exception as exc:
            yield ("experiments", name), f"cannot build: {describe_exception(exc)}"


async def _no_send(cluster: str, request: OutboundRequest) -> tuple[int, bytes, float]:
    raise AssertionError("the preflight never starts a mirror")


def _tls(config: GatewayConfig, base_dir: Path) -> Iterator[Issue]:
    if config.listen.tls is None:
        return
    try:
        build_tls_context(config.listen.tls, base_dir)
    except BuildError as exc:
        yield exc.path, exc.message


def _access_log(config: GatewayConfig) -> Iterator[Issue]:
    """The gateway opens the access log for appending (relative to its working directory) and
    creates no directories for it."""
    log = config.access_log
    if not log.enabled or log.path in _STANDARD_STREAMS:
        return
    problem = _appendable(Path(log.path), create_parents=False)
    if problem is not None:
        yield ("access_log", "path"), problem


def _event_store(config: GatewayConfig) -> Iterator[Issue]:
    """The SQLite event store is opened (its directory created) when experiments or feedback need it."""
    if not needs_experiments(config) or config.state.redis_url is not None:
        return
    path = Path(config.state.sqlite_path)
    problem = _appendable(path, create_parents=True)
    if problem is None and path.is_file():
        try:
            with path.open("rb") as existing:
                header = existing.read(len(_SQLITE_HEADER))
        except OSError as exc:
            problem = f"cannot read {path}: {exc.strerror or exc}"
        else:
            if header and header != _SQLITE_HEADER:
                problem = f"{path} exists and is not an SQLite database"
    if problem is not None:
        yield ("state", "sqlite_path"), problem


def _appendable(path: Path, *, create_parents: bool) -> str | None:
    """Why a file at `path` could not be opened for appending (None when it could), without
    creating it: the file must be a writable file, or its directory must exist (or be creatable)
    and be writable."""
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"no permission to write {path}"
    directory = path.parent
    if not directory.exists():
        if not create_parents:
            return f"the directory {directory} does not exist"
        ancestor = directory
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"cannot create the directory {directory}: {ancestor} is not a directory"
        directory = ancestor
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"no permission to create files in {directory}"
    return None


def _runtime(config: GatewayConfig, base_dir: Path) -> Iterator[Issue]:
    try:
        build_runtime(config, _scratch_metrics(), None, previous=None, base_dir=base_dir)
    except BuildError as exc:
        yield exc.path, exc.message
    except Exception as exc:
        yield (), f"the gateway cannot be built from this config: {describe_exception(exc)}"

"""The gateway process: data listener, admin listener, reloads, draining and signals.

Resources open in order and close in reverse: runtime (clusters with their health checks), data
listener, admin listener, housekeeping (access-log flush, idle upstream connections), file watcher.
A reload builds a whole new runtime beside the running one and swaps one reference; requests in
flight keep the runtime they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway import SOURCE_REASON
from gateway.access_log import AccessLog
from gateway.admin import build_admin_app
from gateway.config import ConfigError, GatewayConfig
from gateway.config.errors import BuildError, describe_exception, one_line
from gateway.core.native import STALE_BUILD, data_path_mode
from gateway.experiments_metrics import ExperimentsCollector
from gateway.experiments_runtime import ExperimentsService, needs_experiments
from gateway.http.listener import HttpServer, ListenerLimits
from gateway.loading import load_gateway_config
from gateway.observability import ClusterStateCollector, GatewayMetrics
from gateway.proxy import Proxy
from gateway.runtime import Runtime, build_runtime
from gateway.tls import build_tls_context
from gateway.usage_ledger import open_usage_ledger
from routing.endpoints import Endpoint

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.grpc.front_door import GrpcFrontDoor
    from gateway.mesh.server import MeshServer

log = logging.getLogger("turnout")


class StartError(Exception):
    """Something the config names could not be opened when the gateway started (the check at load
    cannot connect to it); `turnout run` prints it on one line."""


# Housekeeping cadence: flushes the access-log buffer and closes idle upstream connections.
HOUSEKEEPING_INTERVAL_S = 0.5


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        config_path: Path | None = None,
        *,
        watch: bool = False,
        reuse_port: bool = False,
        admin_socket: str | None = None,
    ) -> None:
        """`reuse_port` and `admin_socket` are set for a process run by the supervisor
        (`gateway.supervisor`): the data port is shared with its siblings, and the admin API is
        served on a private Unix socket that the supervisor's own admin port reads and aggregates."""
        self._reuse_port = reuse_port
        self._admin_socket = admin_socket
        self.config_path = config_path
        self.base_dir = config_path.parent if config_path is not None else Path.cwd()
        self.registry = CollectorRegistry(auto_describe=True)
        self.metrics = GatewayMetrics(self.registry)
        self.access_log: AccessLog | None = None
        self._initial_config = config
        self._watch = watch
        self._runtime: Runtime | None = None
        self.experiments: ExperimentsService | None = None
        self.registry.register(ClusterStateCollector(lambda: self._runtime.clusters if self._runtime else {}))
        self.registry.register(ExperimentsCollector(lambda: self.experiments))
        self.listener: HttpServer | None = None
        self._proxy: Proxy | None = None
        self.mesh: MeshServer | None = None
        """Envoy's ext_proc, ext_authz, RLS and ADS server, when the config has a mesh section."""
        self.grpc: GrpcFrontDoor | None = None
        """The gRPC front door: the main port's HTTP/2 connections, and listen.grpc_port when set."""
        self._admin_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Future[list[str]]] = set()
        self._registered: dict[str, dict[str, tuple[int, int | None]]] = {}
        """Endpoints added through the admin API (weight, grpc_port), re-applied to a cluster rebuilt
        by a reload."""
        self.draining = False
        self.ready = False
        self.stopped = asyncio.Event()

    @property
    def runtime(self) -> Runtime:
        """The runtime serving new requests (swapped whole by a reload)."""
        assert self._runtime is not None, "the gateway has not started"
        return self._runtime

    @property
    def data_port(self) -> int:
        assert self.listener is not None
        return self.listener.port

    @property
    def admin_port(self) -> int:
        assert self._admin_runner is not None
        return int(self._admin_runner.addresses[0][1])

    async def start(self) -> None:
        config = self._initial_config
        # OpenAI routes' token usage, beside the experiments' events (gateway/usage_ledger.py).
        self.metrics.llm.ledger = open_usage_ledger(config.state)
        if config.access_log.enabled:
            settings = config.access_log
            self.access_log = AccessLog(settings.path, settings.sample, settings.fields)
        try:
            await self._update_experiments(config)
        except Exception as exc:  # a store that is down at start is no traceback, but one clear line
            where = "state.url" if config.state.redis_url else "state.sqlite_path"
            raise StartError(f"the experiments' event store ({where}): {describe_exception(exc)}") from exc
        self._runtime = build_runtime(
            config,
            self.metrics,
            self.access_log,
            previous=None,
            base_dir=self.base_dir,
            experiments=self.experiments,
        )
        await self._runtime.start()
        try:
            await self._open_listeners(config)
        except BaseException:
            # A port already taken: close what started (health checks, pools) before failing.
            if self.listener is not None:
                await self.listener.close()
            if self.grpc is not None:
                await self.grpc.stop(0)
            if self._admin_runner is not None:
                await self._admin_runner.cleanup()
            await self._runtime.stop()
            if self.experiments is not None:
                await self.experiments.stop()
            raise
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        if self._watch and self.config_path is not None:
            self._tasks.append(asyncio.create_task(self._watch_config()))
        # Everything loaded so far (modules, config, runtime) lives as long as the process: moving it
        # out of the collector's reach keeps full collections from pausing the data path for the
        # milliseconds it takes to walk hundreds of thousands of long-lived objects.
        gc.collect()
        gc.freeze()
        self.ready = True
        admin_at = self._admin_socket or f"{config.admin.host}:{self.admin_port}"
        log.info(
            "turnout listening on %s:%d, admin on %s (data path: %s)",
            config.listen.host,
            self.data_port,
            admin_at,
            data_path_mode(),
        )
        if SOURCE_REASON is not None and SOURCE_REASON.startswith(STALE_BUILD):
            log.warning(
                "the data path runs from source because its %s; `make venv` (or "
                "`pip install --no-build-isolation --no-deps -e .`) compiles it again",
                SOURCE_REASON,
            )

    async def _open_listeners(self, config: GatewayConfig) -> None:
        listen = config.listen
        limits = ListenerLimits(
            listen.max_header_bytes,
            listen.max_headers,
            listen.max_body_bytes,
            listen.header_timeout,
            listen.idle_timeout,
            keep_escaped_slashes=listen.escaped_slashes == "keep",
        )
        tls = build_tls_context(listen.tls, self.base_dir) if listen.tls is not None else None
        self._proxy = proxy = Proxy(self.runtime, b"https" if tls is not None else b"http")
        self.listener = HttpServer(proxy.handle, limits, tls)
        self.metrics.listener_rejections = lambda: dict(self.listener.rejections) if self.listener else {}
        from gateway.grpc.front_door import GrpcFrontDoor

        # gRPC on the main port (HTTP/2 told apart by its preface, or ALPN h2): always served, as
        # it costs no work until a client speaks HTTP/2 (`listen.grpc_transport`: docs/grpc.md).
        self.grpc = GrpcFrontDoor(
            lambda: self.runtime,
            listen.max_body_bytes,
            self.registry,
            client_certificates=listen.tls is not None and listen.tls.client_cert == "require",
            max_header_bytes=listen.max_header_bytes,
        )
        await self.grpc.start_spliced(
            client_certificates=listen.tls is not None and listen.tls.client_cert != "none",
            native=listen.grpc_transport == "native",
        )
        self.listener.h2 = self.grpc.take
        self._sync_grpc_addresses()
        await self.listener.start(listen.host, listen.port, listen.backlog, reuse_port=self._reuse_port)
        if listen.grpc_port is not None:
            from gateway.grpc.tls import server_credentials

            credentials = server_credentials(listen.tls, self.base_dir) if listen.tls is not None else None
            await self.grpc.start(
                listen.host, listen.grpc_port, reuse_port=self._reuse_port, credentials=credentials
            )
        admin = config.admin
        self._admin_runner = web.AppRunner(build_admin_app(self, admin.token), access_log=None)
        await self._admin_runner.setup()
        if self._admin_socket is not None:
            await web.UnixSite(self._admin_runner, self._admin_socket).start()
        else:
            await web.TCPSite(self._admin_runner, admin.host, admin.port).start()
        if config.mesh is not None:
            from gateway.mesh import open_mesh

            self.mesh = open_mesh(config.mesh, lambda: self.runtime)
            await self.mesh.start()

    async def reload(self, source: str) -> list[str]:
        """Load the config file again and swap it in; returns the errors when it is refused.

        Never raises: whatever stops the new config (a located config error, or a failure while
        building or starting it) is logged as one error line and returned, and the running config
        keeps serving."""
        if self.config_path is None:
            return ["the gateway was started without a config file"]
        async with self._reload_lock:
            try:
                config = load_gateway_config(self.config_path)
                replaced = await self._swap_in(config, source)
            except ConfigError as err:
                errors = err.errors
            except BuildError as err:  # a file it names changed between the preflight and the build
                errors = [err.unlocated(str(self.config_path))]
            except Exception as exc:
                log.debug("config reload (%s) failed", source, exc_info=exc)
                reason = describe_exception(exc)
                errors = [f"{self.config_path}: the new config could not be applied: {reason}"]
            else:
                self.metrics.reloads.labels("ok").inc()
                log.info("config reloaded (%s)", source)
                await self._stop_replaced(replaced)
                return []
            self.metrics.reloads.labels("refused").inc()
            log.error(
                "config reload (%s) refused, keeping the running config: %s",
                source,
                "; ".join(one_line(error) for error in errors),
            )
            return errors

    async def _swap_in(self, config: GatewayConfig, source: str) -> Runtime:
        """Build and start a runtime for `config`, then make it the one serving new requests; returns
        the runtime it replaced. The runtime is built before anything running is touched; if it
        fails to start, what it started is stopped again and the running runtime stays."""
        old = self.runtime
        if (
            config.listen != old.config.listen
            or config.admin != old.config.admin
            or config.access_log != old.config.access_log
        ):
            log.warning("config reload (%s): listen/admin/access_log changes need a restart", source)
        new = build_runtime(
            config,
            self.metrics,
            self.access_log,
            previous=old,
            base_dir=self.base_dir,
            experiments=self.experiments,
        )
        try:
            await self._update_experiments(config)
            new.experiments = self.experiments
            await new.start()
        except BaseException:
            await new.stop_replaced(old)
            raise
        for cluster, endpoints in self._registered.items():
            if cluster in new.clusters:
                for address, (weight, _) in endpoints.items():
                    _add_endpoint(new, cluster, address, weight)
        self._runtime = new
        if self._proxy is not None:
            self._proxy.runtime = new
        self._sync_grpc_addresses()
        return old

    async def _stop_replaced(self, old: Runtime) -> None:
        """Stop what only the replaced runtime used. The new config already serves: a failure here
        is worth an error line, not a refusal."""
        try:
            await old.stop_replaced(self.runtime)
        except Exception as exc:
            log.error("config reload: stopping what the old config ran failed: %s", describe_exception(exc))

    def _reload_in_background(self, source: str) -> None:
        """Start a reload from a signal handler. The task is kept until it ends (the loop holds
        tasks only weakly); `reload` reports its own errors, so the task never ends in one."""
        task = asyncio.ensure_future(self.reload(source))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _update_experiments(self, config: GatewayConfig) -> None:
        """Start the experiments service when the config first needs it; apply the config's experiments."""
        if self.experiments is None and needs_experiments(config):
            self.experiments = ExperimentsService(
                config.state,
                lambda: self._runtime.clusters if self._runtime else {},
                secure_cookie=config.listen.tls is not None,
            )
            await self.experiments.start()
        if self.experiments is not None:
            await self.experiments.apply(config)

    def set_drained(self, cluster: str, address: str, drained: bool) -> bool:
        endpoints = self.runtime.clusters[cluster].endpoints
        return endpoints.drain(address) if drained else endpoints.undrain(address)

    def register_endpoint(
        self, cluster: str, address: str, weight: int, grpc_port: int | None = None
    ) -> str | None:
        problem = _add_endpoint(self.runtime, cluster, address, weight)
        if problem is None:
            self._registered.setdefault(cluster, {})[address] = (weight, grpc_port)
            self._sync_grpc_addresses()
        return problem

    def deregister_endpoint(self, cluster: str, address: str) -> bool:
        registered = self._registered.get(cluster, {}).pop(address, None)
        if registered is not None and registered[1] is not None:
            self._sync_grpc_addresses()
        return self.runtime.clusters[cluster].endpoints.remove(address) is not None

    def _sync_grpc_addresses(self) -> None:
        """Where each endpoint serves gRPC, after the config, an admin call or a pool's announce
        file changed it (gateway/grpc_ports.py): for the data path and the gRPC health checks."""
        from gateway.grpc_ports import apply_added_grpc_addresses

        runtime = self.runtime
        added = apply_added_grpc_addresses(runtime, self._registered, self._sync_grpc_addresses)
        if self.grpc is not None:
            self.grpc.channels.grpc_addresses = _grpc_addresses(runtime.config, lambda: self.runtime, added)

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            if self.access_log is not None:
                self.access_log.flush()
            await self._write_usage()
            runtime = self._runtime
            if runtime is not None:
                now = loop.time()
                for cluster in runtime.clusters.values():
                    cluster.close_idle(now)

    async def _write_usage(self) -> None:
        ledger = self.metrics.llm.ledger
        rows = ledger.take() if ledger is not None else None
        if ledger is None or not rows:
            return
        try:
            await asyncio.to_thread(ledger.write, rows)
        except Exception:  # a full disk or a locked file must not stop the housekeeping
            log.exception("writing token usage to %s failed; %d rows dropped", ledger.where, len(rows))

    async def _watch_config(self) -> None:
        """Reload when the config file changes. The directory is watched, not the file: editors that
        save by writing a new file and renaming it over the old one replace the watched inode."""
        from watchfiles import awatch

        assert self.config_path is not None
        # abspath and dirname only edit strings: nothing here blocks.
        target = os.path.abspath(self.config_path)  # noqa: ASYNC240
        async for changes in awatch(os.path.dirname(target)):
            if any(os.path.abspath(changed) == target for _, changed in changes):  # noqa: ASYNC240
                await self.reload("file change")

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain timeout), then close."""
        if self.draining:
            return
        self.draining = True
        self.ready = False
        timeout = drain_timeout if drain_timeout is not None else self._initial_config.listen.drain_timeout
        # gRPC calls in flight drain alongside the HTTP requests (GOAWAY first, then their grace).
        grpc_stopped = asyncio.ensure_future(self.grpc.stop(timeout)) if self.grpc is not None else None
        if self.listener is not None:
            finished = await self.listener.drain(timeout)
            if not finished:
                log.warning("drain timeout reached with requests still in flight; closing them")
            await self.listener.close()
        if grpc_stopped is not None:
            await grpc_stopped
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.mesh is not None:
            await self.mesh.stop()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        if self._runtime is not None:
            await self._runtime.stop()
        if self.experiments is not None:
            await self.experiments.stop()  # flushes every recorded event: SIGTERM loses none
        await self._write_usage()
        if self.access_log is not None:
            self.access_log.close()
        self.stopped.set()

    async def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT (drain, then stop); SIGHUP reloads the config."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(self.shutdown()))
        loop.add_signal_handler(signal.SIGINT, lambda: asyncio.ensure_future(self.shutdown()))
        loop.add_signal_handler(signal.SIGHUP, lambda: self._reload_in_background("SIGHUP"))
        await self.start()
        # SIGUSR1 after log rotation, as nginx takes it: the access log reopens its file. Handled even
        # with no access log, so that a rotation script (or the supervisor passing it on) never ends
        # a gateway.
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_access_log)
        await self.stopped.wait()

    def _reopen_access_log(self) -> None:
        if self.access_log is not None:
            self.access_log.reopen()


def _grpc_addresses(
    config: GatewayConfig, runtime: Callable[[], Runtime], added: dict[str, str]
) -> dict[str, str]:
    """The gRPC address of each endpoint whose entry names a `grpc_port`, by its HTTP address (a
    DNS name's resolved addresses found in the runtime's endpoint sets), and of those `added`
    since the config."""
    from gateway.config.models.endpoint import grpc_ports
    from routing.grpc_address import grpc_addresses

    def endpoint(address: str) -> Endpoint | None:
        for cluster in runtime().clusters.values():
            found = cluster.endpoints.get(address)
            if found is not None:
                return found
        return None

    entries = [entry for cluster in config.clusters.values() for entry in cluster.endpoints]
    return grpc_addresses(grpc_ports(entries), endpoint, added)


def _add_endpoint(runtime: Runtime, cluster: str, address: str, weight: int) -> str | None:
    from routing.discovery.static import parse_address

    try:
        host, port = parse_address(address)
    except ValueError as exc:
        return str(exc)
    if weight < 1:
        return "weight must be at least 1"
    endpoints = runtime.clusters[cluster].endpoints
    if endpoints.get(address) is None:
        endpoints.add(Endpoint(host, port, weight))
    return None

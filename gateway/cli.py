"""The `turnout` command: run the gateway, validate a config, print the schema, run workers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from gateway.core.extras import MissingExtra

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def _run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from gateway.config.errors import BuildError
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway, StartError
    from gateway.supervisor import resolve_processes

    path = Path(args.config)
    try:
        config = load_gateway_config(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    if args.command == "extproc" and config.mesh is None:
        print(f"{path}: no mesh section: add one (mesh: {{}} serves 127.0.0.1:18000)", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The config watcher's library logs every change in the config's directory; ours logs reloads.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    if args.admin_socket is None:
        processes = resolve_processes(args.processes if args.processes is not None else config.processes)
        if processes > 1:
            return _supervise(config, path, processes, args)
    _install_uvloop()
    gateway = Gateway(
        config,
        path,
        watch=not args.no_watch,
        reuse_port=args.admin_socket is not None,
        admin_socket=args.admin_socket,
    )
    try:
        asyncio.run(gateway.serve_forever())
    except BuildError as err:  # a file the config names changed after it was checked at load
        print(err.unlocated(str(path)), file=sys.stderr)
        return 1
    except (OSError, StartError) as exc:
        print(f"turnout: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _supervise(config: GatewayConfig, path: Path, processes: int, args: argparse.Namespace) -> int:
    """Run `processes` gateway processes on the one port, under a supervisor (gateway.supervisor)."""
    from gateway.supervisor import Supervisor, SupervisorError

    supervisor = Supervisor(config, path, processes, watch=not args.no_watch, log_level=args.log_level)
    try:
        asyncio.run(supervisor.run())
    except SupervisorError as err:
        print(f"turnout: cannot run {processes} processes: {err}", file=sys.stderr)
        return 1
    return 0


def _process_count(value: str) -> int | str:
    """--processes: a whole number from 1, or auto (the CPUs this process may use)."""
    if value == "auto":
        return value
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it; asyncio's loop still works
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _validate(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, summarize
    from gateway.loading import load_gateway_config

    failed = False
    for name in args.files:
        try:
            config = load_gateway_config(Path(name))
        except ConfigError as err:
            print(err, file=sys.stderr)
            failed = True
            continue
        print(f"{name}: {summarize(config)}")
    return 1 if failed else 0


def _schema(args: argparse.Namespace) -> int:
    from gateway.config import json_schema

    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    sys.stdout.write("\n")
    return 0


def _version() -> str:
    """The installed distribution's version; a source tree run without installing has none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("turnout")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnout", description="An async gateway for ML inference traffic.")
    parser.add_argument("--version", action="version", version=f"turnout {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("--config", required=True, help="the YAML config file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--no-watch", action="store_true", help="do not reload when the config file changes")
    run.add_argument(
        "--processes",
        type=_process_count,
        default=None,
        help="gateway processes sharing the port, or auto for one per usable CPU (default: the "
        "config's processes, 1 unless set)",
    )
    # Set by the supervisor for each process it runs: that process shares the data port and serves
    # its admin API on this private Unix socket.
    run.add_argument("--admin-socket", default=None, help=argparse.SUPPRESS)
    run.set_defaults(handler=_run)

    extproc = commands.add_parser(
        "extproc", help="run the gateway for Envoy: its mesh section's ext_proc, ext_authz, RLS and ADS"
    )
    extproc.add_argument("--config", required=True, help="the YAML config file, with a mesh section")
    extproc.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    extproc.add_argument("--no-watch", action="store_true", help="do not reload when the config file changes")
    extproc.set_defaults(handler=_run, processes=1, admin_socket=None)  # the mesh runs in one process

    validate = commands.add_parser("validate", help="check config files; exit 1 when one is invalid")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(handler=_validate)

    schema = commands.add_parser("schema", help="print the config's JSON Schema")
    schema.set_defaults(handler=_schema)

    from gateway.report_cli import add_export_parser, add_report_parser

    add_report_parser(commands)
    add_export_parser(commands)

    from gateway.usage_cli import add_usage_parser

    add_usage_parser(commands)

    from gateway.monitor_cli import add_monitor_parser

    add_monitor_parser(commands)

    for name, help_text in (("worker", "run one inference worker"), ("workers", "run a pool of workers")):
        sub = commands.add_parser(name, help=help_text, add_help=False)
        sub.set_defaults(handler=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        # Worker commands own their arguments: hand them everything after the command name.
        if argv and argv[0] in ("worker", "workers"):
            from inference_workers.cli import pool_main, worker_main

            return (worker_main if argv[0] == "worker" else pool_main)(argv[1:])
        args = build_parser().parse_args(argv)
        result: int = args.handler(args)
    except MissingExtra as missing:  # the workers or the report's plots, on a gateway-only install
        print(f"turnout: {missing}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())

"""Command lines: `turnout worker` (one worker process) and `turnout workers` (a supervised pool).

Both parse their arguments here and hand typed settings to `server.serve` or `pool.run_pool`.
Mistakes that can be seen before starting (an unusable --device, a bad --models value, a missing
repository) end the command at once with status 2 and a message, as argparse does for its own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from inference_workers.device import DeviceError, parse_device, visible_gpus
from inference_workers.selection import ModelSelection, SelectionError
from inference_workers.server import WorkerSettings, serve

USAGE_ERROR = 2


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="turnout worker", description="Serve a model repository over the Open Inference Protocol."
    )
    _repository_arguments(parser)
    parser.add_argument("--http-port", type=int, required=True, help="REST port (0: any free port)")
    parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port; omit to serve REST only")
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds to let requests in flight finish on SIGTERM",
    )
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process dies")
    parser.add_argument("--name", default="turnout-worker", help="server name reported by GET /v2")
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        selection = ModelSelection.parse(args.models)
        gpus = len(visible_gpus())
        device = parse_device(args.device, gpus)
    except (SelectionError, DeviceError) as exc:
        print(f"turnout worker: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if not args.model_repository.is_dir():
        print(
            f"turnout worker: --model-repository {args.model_repository} is not a directory", file=sys.stderr
        )
        return USAGE_ERROR
    settings = WorkerSettings(
        model_repository=args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        host=args.host,
        device=device,
        visible_gpus=gpus,
        models=selection,
        max_loaded_models=args.max_loaded_models,
        shutdown_grace_s=args.shutdown_grace,
        exit_with_parent=args.exit_with_parent,
        name=args.name,
    )
    if args.device == "auto" and device.kind == "cpu":
        logging.getLogger(__name__).warning("no GPU visible: --device auto runs on the CPU")
    return _run(serve(settings))


def pool_main(argv: list[str]) -> int:
    from inference_workers.pool import PoolSettings, run_pool

    parser = argparse.ArgumentParser(
        prog="turnout workers", description="Run and supervise several workers over one model repository."
    )
    _repository_arguments(parser)
    parser.add_argument(
        "--replicas", type=_positive_int, default=None, help="workers to run (default: one per GPU, or 1)"
    )
    parser.add_argument("--base-port", type=int, default=9001, help="REST port of the first worker")
    parser.add_argument("--grpc-base-port", type=int, default=None, help="gRPC port of the first worker")
    parser.add_argument("--device", default="auto", help="device of every worker (auto, cpu, cuda)")
    parser.add_argument("--announce", type=Path, default=None, help="JSON file kept listing the live workers")
    parser.add_argument("--register-url", default=None, help="gateway admin URL to POST/DELETE endpoints at")
    parser.add_argument(
        "--register-token",
        default=os.environ.get("TURNOUT_ADMIN_TOKEN") or None,
        help="bearer token for --register-url (default: $TURNOUT_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--shutdown-grace", type=float, default=30.0, help="seconds each worker gets to drain"
    )
    parser.add_argument(
        "--restart-backoff", type=float, default=0.5, help="first restart delay after a crash, in seconds"
    )
    parser.add_argument("--max-restart-backoff", type=float, default=30.0, help="cap on the restart delay")
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        ModelSelection.parse(args.models)
        parse_device(args.device, len(visible_gpus()))
    except (SelectionError, DeviceError) as exc:
        print(f"turnout workers: {exc}", file=sys.stderr)
        return USAGE_ERROR
    settings = PoolSettings(
        model_repository=args.model_repository,
        replicas=args.replicas,
        base_port=args.base_port,
        grpc_base_port=args.grpc_base_port,
        host=args.host,
        device=args.device,
        models=args.models,
        max_loaded_models=args.max_loaded_models,
        announce=args.announce,
        register_url=args.register_url,
        register_token=args.register_token,
        shutdown_grace_s=args.shutdown_grace,
        restart_backoff_s=args.restart_backoff,
        max_restart_backoff_s=args.max_restart_backoff,
        log_level=args.log_level,
    )
    return _run(run_pool(settings))


def _repository_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository", type=Path, required=True, help="DIR/<model>/<version>/model.yaml"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--models", default=None, help="serve only these: NAME[:VERSION],...")
    parser.add_argument(
        "--max-loaded-models", type=_positive_int, default=None, help="cap on loaded model versions (LRU)"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

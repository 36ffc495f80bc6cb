"""`python -m inference_workers worker ...` or `python -m inference_workers workers ...`.

The same commands as `turnout worker` and `turnout workers`, for hosts that run workers without the
gateway's command line.
"""

from __future__ import annotations

import sys

from inference_workers.cli import pool_main, worker_main

COMMANDS = {"worker": worker_main, "workers": pool_main}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m inference_workers {worker,workers} [options]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`python -m inference_workers.worker ...`: run one worker (the same as `turnout worker ...`)."""

from __future__ import annotations

import sys

from inference_workers.cli import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))

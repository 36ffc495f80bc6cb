"""Two gateway processes sharing one Redis admit exactly the limit between them.

The test starts this same file twice as a script: each child builds its own Redis-backed limiter,
says "ready", waits for "go" on stdin (so both fire at once), then decides waves of concurrent
requests for the same caller, so that the two processes' decisions interleave in Redis, and prints
how many it admitted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.plugins.conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 100
WAVES = 20
WAVE_SIZE = 10  # 2 x 20 x 10 = 400 requests for a limit of 100: both processes run out mid-way
# Children import the project and connect to Redis; generous for a loaded 2-core CI machine.
CHILD_TIMEOUT_S = 30.0


async def _decide_waves(redis_url: str) -> int:
    from gateway.core.context import Principal, RequestContext
    from gateway.core.filters import BuildContext
    from plugins.rate_limit import FACTORY, RateLimitConfig

    config = RateLimitConfig.model_validate(
        {
            "limits": [{"key": "principal", "rate": f"{LIMIT}/h"}],
            "backend": "redis",
            "redis_timeout": "5s",  # exactness is under test here, not the budget
            "on_redis_failure": "fail_closed",  # a Redis failure shows up as a refusal, not a pass
        }
    )
    limiter = FACTORY(config, BuildContext("infer", "up", None, redis_url=redis_url))
    await limiter.start()
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        async def one() -> bool:
            ctx = RequestContext("POST", "/infer", "", {}, "10.0.0.1", 0.0, principal=Principal("alice"))
            decision = limiter.on_request(ctx)
            assert asyncio.iscoroutine(decision)
            return await decision is None

        admitted = 0
        for _ in range(WAVES):
            admitted += sum(await asyncio.gather(*(one() for _ in range(WAVE_SIZE))))
    finally:
        await limiter.stop()
    return admitted


def _child_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    options = parser.parse_args()
    print(asyncio.run(_decide_waves(options.redis_url)), flush=True)


def _spawn(redis_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, __file__, "--redis-url", redis_url]
    return subprocess.Popen(argv, cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_two_processes_admit_exactly_the_limit(redis_server: RedisServer) -> None:
    children = [_spawn(redis_server.url), _spawn(redis_server.url)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        admitted = [int(child.communicate(timeout=CHILD_TIMEOUT_S)[0].strip()) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert sum(admitted) == LIMIT


if __name__ == "__main__":
    _child_main()

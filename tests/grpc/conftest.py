"""Fixtures the gRPC tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.grpc.front_door_setup import NATIVE, front_door_config
from tests.grpc.grpc_upstreams import Upstream


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream]]:
    """Two real gRPC upstreams on loopback, answering as "one" and "two"."""
    async with Upstream("one") as one, Upstream("two") as two:
        yield one, two


@pytest.fixture
def native_config(upstreams: tuple[Upstream, Upstream], tmp_path: Path) -> dict[str, Any]:
    """The front door's routes to `upstreams`, the main port's HTTP/2 on the own transport."""
    one, two = upstreams
    return front_door_config(one, two, tmp_path, **NATIVE)

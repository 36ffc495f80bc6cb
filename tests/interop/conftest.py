"""Model servers for the interop tests, started once per session: real MLServer, KServe
and TorchServe processes (skipped, or failed on CI, when their venvs are not built)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.model_servers import (
    ModelServer,
    TorchServe,
    start_kserve,
    start_mlserver,
    start_torchserve,
)
from tests.interop.server_venvs import server_python


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    server = start_mlserver(server_python("mlserver"), tmp_path_factory.mktemp("mlserver"), "bc")
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    server = start_kserve(server_python("kserve"), tmp_path_factory.mktemp("kserve"), "bc")
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def torchserve_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TorchServe, TorchServe]]:
    """Two replicas of TorchServe serving `doubler` through its own `/predictions` API."""
    python = server_python("torchserve")
    first = start_torchserve(python, tmp_path_factory.mktemp("torchserve"))
    try:
        second = start_torchserve(python, tmp_path_factory.mktemp("torchserve"))
    except BaseException:
        first.process.stop()
        raise
    yield first, second
    first.process.stop()
    second.process.stop()


@pytest.fixture(scope="session")
def torchserve_v2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorchServe]:
    """TorchServe with its KServe v2 service envelope (`service_envelope=kservev2`)."""
    server = start_torchserve(server_python("torchserve"), tmp_path_factory.mktemp("torchserve"), "kservev2")
    yield server
    server.process.stop()

"""Third-party model servers and clients, each in a virtual environment of its own.

The interop tests run turnout in front of real MLServer, KServe and TorchServe processes. Their
version pins (pydantic, fastapi, protobuf, numpy...) must never constrain the project's own, so
each server is installed into its own venv under a cache folder and reused between runs. A venv
counts as built only once its `.ready` marker exists, written after the install and an import
check passed, so an interrupted build is redone rather than trusted.

`python3 tests/interop/server_venvs.py` builds them all (CI runs it before the tests); the tests
call `server_python(name)`, which answers the venv's interpreter or skips with the reason. Where
`TURNOUT_REQUIRE_SERVERS` is set (CI), a venv that is missing fails the test instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSpec:
    name: str
    version: str
    requirements: tuple[str, ...]
    # A module whose import proves the install is usable.
    check_import: str


# Pinned to the releases the interop issue was reported against; scikit-learn serves the tiny
# model each test trains, joblib stores it.
SERVERS = {
    spec.name: spec
    for spec in (
        ServerSpec(
            "mlserver",
            "1.7.1",
            ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "scikit-learn", "joblib"),
            "mlserver_sklearn",
        ),
        ServerSpec("kserve", "0.21.0", ("kserve==0.21.0", "scikit-learn", "joblib"), "kserve"),
        # An OpenAI-compatible mock (chat completions, plain and streamed) that answers from rules.
        ServerSpec("fakellm", "0.3.5", ("fakellm==0.3.5",), "fakellm.cli"),
        # TorchServe without PyTorch: its doubler handler (`torchserve_doubler.py`) needs no torch,
        # and the worker gets a stand-in `torch` module at start (`model_servers.py` says why).
        # The wheel does not declare what its worker imports: PyYAML, and numpy for the `kservev2`
        # envelope. Its Java frontend needs Java 17 on the machine (`.ci/run` installs it).
        ServerSpec(
            "torchserve",
            "0.12.0",
            ("torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml", "numpy"),
            "ts.torch_handler.request_envelope.kservev2, yaml, model_archiver",
        ),
        # Triton's gRPC client: it pins protobuf below the project's 7.x, so it runs client scripts
        # from a venv of its own (tests/grpc/test_grpc_tritonclient.py).
        ServerSpec("tritonclient", "2.73.0", ("tritonclient[grpc]==2.73.0", "numpy"), "tritonclient.grpc"),
    )
}

REQUIRE_ENV = "TURNOUT_REQUIRE_SERVERS"
# A fresh install of either server pulls ~60 packages; 15 minutes covers a slow mirror.
INSTALL_TIMEOUT_S = 900


def cache_root() -> Path:
    override = os.environ.get("TURNOUT_TEST_SERVERS_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "turnout-test-servers"


def venv_dir(spec: ServerSpec) -> Path:
    return cache_root() / f"{spec.name}-{spec.version}"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_built(spec: ServerSpec) -> bool:
    return (venv_dir(spec) / ".ready").exists()


def build(spec: ServerSpec) -> Path:
    """Build the server's venv unless it is already built; answer its interpreter."""
    venv = venv_dir(spec)
    if is_built(spec):
        return _python(venv)
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The base interpreter, so a venv made from inside the project's venv does not chain to it.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    python = _python(venv)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *spec.requirements],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    subprocess.run([str(python), "-c", f"import {spec.check_import}"], check=True)
    (venv / ".ready").write_text(" ".join(spec.requirements) + "\n")
    return python


def server_python(name: str) -> Path:
    """The interpreter of a built server venv; skips (or fails on CI) when it is not built."""
    import pytest

    spec = SERVERS[name]
    if is_built(spec):
        return _python(venv_dir(spec))
    reason = (
        f"{name} {spec.version} is not installed in {venv_dir(spec)}; "
        "build it with `python3 tests/interop/server_venvs.py`"
    )
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(reason)
    pytest.skip(reason)


def main(names: list[str]) -> int:
    failed = []
    for name in names or list(SERVERS):
        spec = SERVERS[name]
        try:
            print(f"{name}: {build(spec)}", flush=True)
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"{name}: could not be built: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

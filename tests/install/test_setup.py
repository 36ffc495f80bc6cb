"""setup.py's choice of what to compile, without compiling: the builds themselves are checked by
tests/install/check_installs.py (run by .ci/run)."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup_py() -> dict[str, Any]:
    # Under another name than __main__, setup.py defines its helpers without calling setup().
    return runpy.run_path(str(ROOT / "setup.py"), run_name="turnout_setup")


@pytest.mark.parametrize(
    "argv",
    [
        ["setup.py", "egg_info"],  # pip asking for the build requirements
        ["setup.py", "dist_info", "--output-dir", "/tmp/x"],  # pip asking for the metadata
        ["setup.py", "sdist"],
        ["setup.py", "--name"],
    ],
)
def test_a_metadata_request_compiles_nothing(setup_py: dict[str, Any], argv: list[str]) -> None:
    assert setup_py["extensions"](argv, {}) == ([], setup_py["METADATA_ONLY"])


@pytest.mark.parametrize("command", ["bdist_wheel", "editable_wheel", "build_ext"])
def test_turnout_pure_python_at_install_compiles_nothing_and_says_so(
    setup_py: dict[str, Any], command: str
) -> None:
    argv = ["setup.py", command, "--dist-dir", "/tmp/x"]
    assert setup_py["extensions"](argv, {"TURNOUT_PURE_PYTHON": "1"}) == ([], "TURNOUT_PURE_PYTHON was set")


def test_the_compile_lets_no_unknown_type_through(setup_py: dict[str, Any]) -> None:
    # With these, an isolated build compiled a class over a base it could not see, and crashed.
    assert not {"--ignore-missing-imports", "--allow-subclassing-any"} & set(setup_py["_CHECKS"])

"""Build hook: compile the data path with mypyc when it can; pure Python otherwise.

The modules every proxied request runs through (gateway/core/native.py lists them) are compiled to
C extensions at install time: mypyc turns their type hints into native attribute access and direct
calls (bench/RESULTS.md has what that buys). Everything else, and every module when the build
cannot compile, stays plain Python with the same behaviour. TURNOUT_PURE_PYTHON=1 skips compiling.

Whatever happens, the build records it in gateway/core/native_build.json: the digest of each
source it compiled (so the gateway can tell an edited source from its build), or why it compiled
nothing (the gateway logs that reason as it starts).

Everything but the extension modules is declared in pyproject.toml.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# gateway/core/native.py, run without importing the package (its dependencies may be absent here).
NATIVE = runpy.run_path(str(ROOT / "gateway" / "core" / "native.py"))

# Commands that build or install code. Anything else (egg_info, dist_info, sdist: what pip runs to
# read the metadata or the build requirements) must not spend a minute type-checking and compiling.
_BUILD_COMMANDS = frozenset({"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"})

# mypyc type-checks what it compiles, with the project's strict mypy settings (pyproject.toml).
# The compiled modules' own third-party imports are build requirements (pyproject.toml), so their
# types are known: a module that still resolves to Any (an import missing from the build
# environment) fails the check and the install falls back to plain Python, instead of compiling a
# class over an unknown base (that build crashed at start-up). Modules the compiled ones import but
# that stay Python are read silently: their errors are `make lint`'s business, and they keep their
# own behaviour whatever their types resolve to here.
_CHECKS = ["--follow-imports=silent"]


def _extensions() -> tuple[list[Any], str | None]:
    """The extension modules to build, or none and why."""
    if not any(command in _BUILD_COMMANDS for command in sys.argv[1:]):
        return [], "metadata only"
    if os.environ.get("TURNOUT_PURE_PYTHON"):
        return [], "TURNOUT_PURE_PYTHON was set"
    try:
        from mypyc.build import mypycify
    except ImportError:
        return [], "mypyc is not installed"
    try:
        return list(mypycify([*NATIVE["COMPILED_MODULES"], *_CHECKS], opt_level="3")), None
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error: never block the install
        return [], f"mypyc could not compile it ({exc or 'type errors, printed above'})"


EXTENSIONS, WHY_NOT = _extensions()


def _say(why_not: str) -> None:
    print(f"turnout: installing the data path as plain Python: {why_not}", file=sys.stderr)


class RecordingBuildPy(build_py):
    """Records why nothing is compiled when no extension is built (build_ext then does not run)."""

    def run(self) -> None:
        super().run()
        if not EXTENSIONS and WHY_NOT != "metadata only":
            why_not = WHY_NOT or "nothing to compile"
            _say(why_not)
            NATIVE["write_build_record"](Path(self.build_lib), ROOT, why_not)
            if self.editable_mode:
                NATIVE["write_build_record"](ROOT, ROOT, why_not)


class OptionalBuildExt(build_ext):
    """A failed compile leaves no compiled module behind, and plain Python in charge, instead of
    failing the install. A successful one records the digest of every source it compiled."""

    def run(self) -> None:
        inplace = self.inplace  # an editable install runs from the checkout (setuptools resets it)
        try:
            super().run()
        except Exception as exc:  # any build failure means: run as plain Python
            why_not = f"the C build failed ({exc})"
            _say(why_not)
            self._remove_outputs(inplace)
            self._record(why_not, inplace)
            return
        self._record(None, inplace)

    def _record(self, why_not: str | None, inplace: bool) -> None:
        NATIVE["write_build_record"](Path(self.build_lib), ROOT, why_not)
        if inplace:
            NATIVE["write_build_record"](ROOT, ROOT, why_not)

    def _remove_outputs(self, inplace: bool) -> None:
        """Half a build must not load: compiled modules call into their shared library directly."""
        for ext in self.extensions:
            built = self.get_ext_filename(ext.name)
            Path(self.build_lib, built).unlink(missing_ok=True)
            if inplace:
                (ROOT / built).unlink(missing_ok=True)


setup(ext_modules=EXTENSIONS, cmdclass={"build_ext": OptionalBuildExt, "build_py": RecordingBuildPy})

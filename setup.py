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
from collections.abc import Mapping
from importlib.machinery import EXTENSION_SUFFIXES
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
METADATA_ONLY = "metadata only"

# mypyc type-checks what it compiles, with the project's strict mypy settings (pyproject.toml).
# The compiled modules' own third-party imports are build requirements (pyproject.toml), so their
# types are known: a module that still resolves to Any (an import missing from the build
# environment) fails the check and the install falls back to plain Python, instead of compiling a
# class over an unknown base (that build crashed at start-up). Modules the compiled ones import but
# that stay Python are read silently: their errors are `make lint`'s business, and they keep their
# own behaviour whatever their types resolve to here.
_CHECKS = ["--follow-imports=silent"]


def extensions(argv: list[str], environ: Mapping[str, str]) -> tuple[list[Any], str | None]:
    """The extension modules to build for the setup.py command line `argv`, or none and why."""
    if not any(command in _BUILD_COMMANDS for command in argv[1:]):
        return [], METADATA_ONLY
    if environ.get("TURNOUT_PURE_PYTHON"):
        return [], "TURNOUT_PURE_PYTHON was set"
    try:
        from mypyc.build import mypycify
    except ImportError:
        return [], "mypyc is not installed"
    try:
        return list(mypycify([*NATIVE["COMPILED_MODULES"], *_CHECKS], opt_level="3")), None
    except SystemExit:  # how mypyc reports type errors, after printing them
        return [], "the data path does not type-check in the build environment (mypyc's errors above)"
    except Exception as exc:  # a module mypyc cannot compile must not block the install
        return [], f"mypyc could not compile it ({exc})"


def _say(why_not: str) -> None:
    print(f"turnout: installing the data path as plain Python: {why_not}", file=sys.stderr)


class RecordingBuildPy(build_py):
    """Records why nothing is compiled when no extension is built (build_ext then does not run)."""

    def run(self) -> None:
        super().run()
        if not EXTENSIONS and WHY_NOT != METADATA_ONLY:
            why_not = WHY_NOT or "nothing to compile"
            _say(why_not)
            NATIVE["write_build_record"](Path(self.build_lib), ROOT, why_not)
            if self.editable_mode:  # the checkout is what runs: an earlier build there must go
                for source in NATIVE["COMPILED_MODULES"]:
                    path = ROOT / source
                    path.with_name(path.stem + EXTENSION_SUFFIXES[0]).unlink(missing_ok=True)
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


# Run by pip's build backend (and `python setup.py ...`) as __main__; tests load it under another name.
if __name__ == "__main__":
    EXTENSIONS, WHY_NOT = extensions(sys.argv, os.environ)
    setup(ext_modules=EXTENSIONS, cmdclass={"build_ext": OptionalBuildExt, "build_py": RecordingBuildPy})

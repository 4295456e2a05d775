"""The compiled build: the modules of the cycle, compiled by mypyc when ``build_backend`` says so.

The metadata is in ``pyproject.toml``; this file only adds the extension
modules. Compiling is never a reason for the install to fail: when mypyc
cannot analyse the source or the C compiler fails, the build says so in one
line and installs the same modules as pure Python.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_backend import METADATA_VARIABLE, why_pure

# The group a request runs through: the whole cycle, and the clock it records into.
CLOCK = [
    "src/cyclehttp/clock/histogram.py",
    "src/cyclehttp/clock/stats.py",
    "src/cyclehttp/clock/accesslog.py",
]
COMPILED = sorted(
    path for path in [*glob.glob("src/cyclehttp/cycle/*.py"), *CLOCK] if not path.endswith("__init__.py")
)


def say(message: str) -> None:
    print(f"cyclehttp: {message}", file=sys.stderr, flush=True)


def compiled_extensions() -> list[Any]:
    """mypyc's extension modules for ``COMPILED``, or [] for the pure build (and the line that says why)."""
    if os.environ.get(METADATA_VARIABLE):
        return []  # setuptools reads requirements or metadata: the real build comes after
    reason = why_pure()
    if reason is None:
        try:
            from mypyc.build import mypycify
        except ImportError:
            reason = "mypyc (mypy) is not installed in the build environment"
        else:
            try:
                extensions: list[Any] = mypycify(COMPILED, opt_level="3", group_name="cyclehttp")
            except SystemExit:  # mypy's errors are printed above
                reason = "mypyc could not compile the source (its errors are above)"
            except Exception as exc:
                reason = f"mypyc could not compile the source ({type(exc).__name__}: {exc})"
            else:
                say(f"compiling {len(COMPILED)} modules with mypyc")
                return extensions
    say(f"building pure Python: {reason}")
    return []


class OptionalBuildExt(build_ext):
    """``build_ext`` whose failure leaves a pure-Python build instead of a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, a missing header ...
            self._drop_outputs()
            say(f"building pure Python: the C compiler failed ({exc})")

    def _drop_outputs(self) -> None:
        """Remove what was built before the failure: a partial compiled set must not shadow the .py files."""
        for extension in self.extensions:
            path = self.get_ext_fullpath(extension.name)
            if os.path.exists(path):
                os.remove(path)
        self.extensions = []
        self.distribution.ext_modules = []


class CleanBuildPy(build_py):
    """``build_py`` that, for a pure build, first removes compiled modules an earlier build left."""

    def run(self) -> None:
        if not self.distribution.ext_modules:
            for pattern in ("cyclehttp/**/*.so", "cyclehttp/**/*.pyd", "cyclehttp__mypyc*"):
                for path in glob.glob(os.path.join(self.build_lib, pattern), recursive=True):
                    os.remove(path)
        super().run()


setup(
    ext_modules=compiled_extensions(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": CleanBuildPy},
)

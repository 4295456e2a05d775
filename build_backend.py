"""The build backend: setuptools, plus mypyc for the hot path when this machine can compile it.

One source, two builds. ``pip install .`` compiles the modules the cycle runs
(``setup.py`` lists them) with mypyc when a C compiler and the Python headers
are here and the interpreter is CPython; otherwise it installs the same
``.py`` files as pure Python, and says why in one line. Only a compiling build
fetches mypy (``get_requires_for_build_wheel``), so a pure build needs nothing
beyond setuptools. An editable install (``pip install -e .``) is always pure:
a compiled module next to its source would shadow every later edit of it.

``CYCLEHTTP_NO_COMPILE=1`` asks for the pure build.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import sysconfig
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401 - the hooks this backend does not change
    build_sdist,
    get_requires_for_build_sdist,
)

MYPY_REQUIREMENT = "mypy==2.4.1"
"""The mypyc that compiles the cycle; pinned: the C it writes, and so the build, is its own."""

NO_COMPILE_VARIABLE = "CYCLEHTTP_NO_COMPILE"
EDITABLE_VARIABLE = "CYCLEHTTP_BUILDING_EDITABLE"
METADATA_VARIABLE = "CYCLEHTTP_READING_METADATA"
"""Set while setuptools runs setup.py only for requirements or metadata: nothing is compiled then."""


def why_pure() -> str | None:
    """Why this build is pure Python, or None when it compiles."""
    if os.environ.get(NO_COMPILE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return f"{NO_COMPILE_VARIABLE}=1"
    if os.environ.get(EDITABLE_VARIABLE):
        return "an editable install runs its .py files"
    if platform.python_implementation() != "CPython":
        return f"mypyc compiles for CPython, not {platform.python_implementation()}"
    include = sysconfig.get_paths().get("include", "")
    if not include or not os.path.exists(os.path.join(include, "Python.h")):
        return "the Python headers (Python.h) are not installed"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if sys.platform != "win32" and shutil.which(compiler) is None:
        return f"no C compiler ({compiler!r} is not on PATH)"
    return None


class _Setting:
    """An environment variable set for the length of a ``with`` block."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        os.environ[self.name] = "1"

    def __exit__(self, *exc_info: object) -> None:
        os.environ.pop(self.name, None)


# mypyc compiles from the types mypy sees: the dependencies the cycle imports must be in the
# build environment too (their annotations, not Any), as they are when the project is checked.
TYPED_DEPENDENCIES = ("httptools>=0.6.3", "python-multipart>=0.0.18")


def compile_requires() -> list[str]:
    """What a compiling build needs beyond setuptools: mypyc (with mypy) and the typed dependencies
    the compiled modules import; nothing for a pure one."""
    return [MYPY_REQUIREMENT, *TYPED_DEPENDENCIES] if why_pure() is None else []


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    with _Setting(METADATA_VARIABLE):
        requires = list(_setuptools.get_requires_for_build_wheel(config_settings))
    return requires + compile_requires()


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    with _Setting(METADATA_VARIABLE):
        return list(_setuptools.get_requires_for_build_editable(config_settings))


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    with _Setting(METADATA_VARIABLE):
        return str(_setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings))


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    with _Setting(METADATA_VARIABLE):
        return str(_setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings))


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    with _Setting(EDITABLE_VARIABLE):
        return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))

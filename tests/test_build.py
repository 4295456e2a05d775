"""One source, two builds: when the install compiles, when it does not and says why, and what it makes.

The compiled build itself is exercised by running the whole suite on it (CI does,
then again on the pure one); here: the rule that picks the build, and a real
pure wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import build_backend  # noqa: E402 - the backend at the repository's root

BUILD_TIMEOUT = 300.0


def test_a_machine_that_can_compile_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(build_backend.NO_COMPILE_VARIABLE, raising=False)
    monkeypatch.delenv(build_backend.EDITABLE_VARIABLE, raising=False)
    monkeypatch.setattr(build_backend.platform, "python_implementation", lambda: "CPython")
    monkeypatch.setattr(build_backend.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(build_backend.os.path, "exists", lambda path: True)
    assert build_backend.why_pure() is None
    requires = build_backend.compile_requires()
    assert requires[0] == build_backend.MYPY_REQUIREMENT
    assert any(requirement.startswith("httptools") for requirement in requires)


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ("no_compile", "CYCLEHTTP_NO_COMPILE=1"),
        ("editable", "an editable install runs its .py files"),
        ("pypy", "mypyc compiles for CPython, not PyPy"),
        ("no_compiler", "no C compiler"),
        ("no_headers", "Python headers"),
    ],
)
def test_each_reason_for_a_pure_build_is_said(
    monkeypatch: pytest.MonkeyPatch, setting: str, reason: str
) -> None:
    monkeypatch.delenv(build_backend.NO_COMPILE_VARIABLE, raising=False)
    monkeypatch.delenv(build_backend.EDITABLE_VARIABLE, raising=False)
    monkeypatch.setattr(build_backend.shutil, "which", lambda name: f"/usr/bin/{name}")
    if setting == "no_compile":
        monkeypatch.setenv(build_backend.NO_COMPILE_VARIABLE, "1")
    elif setting == "editable":
        monkeypatch.setenv(build_backend.EDITABLE_VARIABLE, "1")
    elif setting == "pypy":
        monkeypatch.setattr(build_backend.platform, "python_implementation", lambda: "PyPy")
    elif setting == "no_compiler":
        monkeypatch.setattr(build_backend.shutil, "which", lambda name: None)
    else:
        monkeypatch.setattr(build_backend.os.path, "exists", lambda path: False)
    if setting != "pypy":
        monkeypatch.setattr(build_backend.platform, "python_implementation", lambda: "CPython")
    found = build_backend.why_pure()
    assert found is not None and reason in found
    assert build_backend.compile_requires() == []


def test_the_pure_wheel_is_the_py_files_and_says_so(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: the build writes build/ and *.egg-info next to the sources
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", ".*", "site"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(source)]
    environment = {**os.environ, build_backend.NO_COMPILE_VARIABLE: "1"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("cyclehttp-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cyclehttp/cycle/connection.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd"))]
    assert "cyclehttp/py.typed" in names
    assert "cyclehttp: building pure Python: CYCLEHTTP_NO_COMPILE=1" in result.stdout + result.stderr

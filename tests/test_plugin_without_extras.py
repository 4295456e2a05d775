"""The pytest plugin in an environment without the ``test`` extra (no pytest-asyncio, no httpx).

The ``pytest11`` entry point loads cyclehttp.testing.plugin in every pytest run of an
environment where cyclehttp is installed, whatever project is tested. So the
plugin must import without its optional dependencies, leave everybody else's
tests alone, and only fail a test that asks for one of its fixtures, with one
line saying what to install.

The first half hides the modules from a fresh interpreter (a ``None`` entry in
``sys.modules`` makes their import raise ``ImportError``) and loads the plugin
with ``-p cyclehttp.testing.plugin``, entry points off (pytest would otherwise still
find pytest-asyncio's installed metadata); the second half is the real thing:
a new venv with this checkout and pytest, nothing else, the plugin loaded
through its entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cyclehttp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_PARENT = Path(cyclehttp.__file__).resolve().parent.parent
RUN_TIMEOUT = 60.0
VENV_TIMEOUT = 120.0
INSTALL_TIMEOUT = 600.0
PLUGIN_ERROR = "Error while loading plugin"
INSTALL_LINE = "pip install 'cyclehttp[test]'"

# Run pytest with some modules made unimportable, as if they were not installed.
HIDING_RUNNER = """
import sys

for name in sys.argv[1].split(","):
    sys.modules[name] = None  # import name -> ImportError
import pytest

sys.exit(pytest.main(sys.argv[2:]))
"""

# Somebody's project that has nothing to do with cyclehttp.
UNRELATED_TESTS = """
def test_unrelated():
    assert 1 + 1 == 2
"""

# A project that uses the fixtures; one plain test beside them must still pass.
FIXTURE_TESTS = """
from cyclehttp import App, Response

app = App([("GET", "/", Response.text("hi"))])


def test_plain():
    assert app is not None


async def test_server(cyclehttp_server):
    await cyclehttp_server(app)


async def test_client(cyclehttp_client):
    await cyclehttp_client.get("/")


async def test_raw(cyclehttp_raw):
    await cyclehttp_raw()
"""

RAW_ONLY_TESTS = """
import pytest

from cyclehttp import App, Response

app = App([("GET", "/", Response.text("hi"))])


@pytest.fixture
def cyclehttp_app():
    return app


async def test_server(cyclehttp_server):
    server = await cyclehttp_server(app)
    async with await server.raw() as connection:
        await connection.send(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
        assert (await connection.read_response()).body == b"hi"


async def test_raw(cyclehttp_raw):
    connection = await cyclehttp_raw()
    await connection.send(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
    assert (await connection.read_response()).status == 200


async def test_client(cyclehttp_client):
    await cyclehttp_client.get("/")
"""


def clean_env() -> dict[str, str]:
    """This environment without what would change which plugins pytest loads."""
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH"):
        env.pop(name, None)
    return env


def user_project(path: Path, tests: str) -> Path:
    """A throwaway project: its own pytest.ini (so this repository's settings stay out) and one test file."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "pytest.ini").write_text("[pytest]\n")
    (path / "test_project.py").write_text(textwrap.dedent(tests))
    return path


def run(
    command: list[str], cwd: Path, timeout: float = RUN_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def run_hiding(project: Path, hidden: list[str]) -> subprocess.CompletedProcess[str]:
    """pytest on ``project`` in a fresh interpreter where ``hidden`` cannot be imported."""
    plugins = [] if "pytest_asyncio" in hidden else ["-p", "pytest_asyncio.plugin"]
    return run(
        [
            sys.executable, "-c", HIDING_RUNNER, ",".join(hidden), *plugins, "-p", "cyclehttp.testing.plugin",
            "-W", "error", "--strict-markers",
        ],
        cwd=project,
        # The cyclehttp this suite imports, wherever it comes from.
        env={**clean_env(), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(PACKAGE_PARENT)},
    )  # fmt: skip


def error_lines(output: str, fixture: str) -> list[str]:
    """The lines of the ERRORS section that a stand-in fixture wrote (the whole report of each)."""
    return [line for line in output.splitlines() if line.startswith(f"the {fixture} fixture needs")]


# --- in a fresh interpreter, modules hidden --------------------------------------------------------------


def test_without_pytest_asyncio_and_httpx_an_unrelated_project_passes(tmp_path: Path) -> None:
    result = run_hiding(user_project(tmp_path, UNRELATED_TESTS), ["pytest_asyncio", "httpx"])
    output = result.stdout + result.stderr
    assert PLUGIN_ERROR not in output
    assert result.returncode == 0, output
    assert "1 passed" in output


def test_without_pytest_asyncio_each_fixture_fails_its_test_with_the_install_line(tmp_path: Path) -> None:
    result = run_hiding(user_project(tmp_path, FIXTURE_TESTS), ["pytest_asyncio", "httpx"])
    output = result.stdout + result.stderr
    assert PLUGIN_ERROR not in output
    assert result.returncode == 1, output
    assert "1 passed, 3 errors" in output, output
    server = error_lines(output, "cyclehttp_server")
    assert server and all(
        line.endswith(f"needs pytest-asyncio, which is not installed: {INSTALL_LINE}") for line in server
    ), server
    assert error_lines(output, "cyclehttp_client")[0].endswith(
        f"needs pytest-asyncio and httpx, which are not installed: {INSTALL_LINE}"
    )
    assert error_lines(output, "cyclehttp_raw")[0].endswith(
        f"needs pytest-asyncio, which is not installed: {INSTALL_LINE}"
    )
    assert "Traceback" not in output and "ModuleNotFoundError" not in output


def test_without_httpx_only_the_client_fixture_fails(tmp_path: Path) -> None:
    result = run_hiding(user_project(tmp_path, RAW_ONLY_TESTS), ["httpx"])
    output = result.stdout + result.stderr
    assert PLUGIN_ERROR not in output
    assert result.returncode == 1, output
    assert "2 passed, 1 error" in output, output
    client = error_lines(output, "cyclehttp_client")
    assert client and client[0].endswith(f"needs httpx, which is not installed: {INSTALL_LINE}"), output
    assert "pytest-asyncio" not in "\n".join(client)


# --- in a real venv: this checkout and pytest, nothing else ---------------------------------------------


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new venv holding this checkout and pytest (no ``test`` extra)."""
    home = tmp_path_factory.mktemp("bare-venv")
    venv_dir = home / "venv"
    created = run([sys.executable, "-m", "venv", str(venv_dir)], cwd=home, timeout=VENV_TIMEOUT)
    assert created.returncode == 0, created.stderr
    python = venv_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    env = {**clean_env(), "CYCLEHTTP_NO_COMPILE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT), "pytest"],
        cwd=home, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, f"installing {ROOT} and pytest failed:\n{installed.stderr[-4000:]}"
    find = "import importlib.util as u; print(u.find_spec('pytest_asyncio'), u.find_spec('httpx'))"
    probe = run([str(python), "-c", find], cwd=home)
    assert probe.stdout.split() == ["None", "None"], "the bare venv has pytest-asyncio or httpx"
    return python


def run_in_venv(python: Path, project: Path) -> tuple[int, str]:
    result = run([str(python), "-m", "pytest", "-p", "no:cacheprovider", "-W", "error"], cwd=project)
    return result.returncode, result.stdout + result.stderr


def test_bare_venv_an_unrelated_project_passes(bare_venv: Path, tmp_path: Path) -> None:
    status, output = run_in_venv(bare_venv, user_project(tmp_path, UNRELATED_TESTS))
    assert PLUGIN_ERROR not in output
    assert status == 0, output
    assert "1 passed" in output
    assert "plugins: cyclehttp-" in output, "the plugin was not loaded, so this test proves nothing"


def test_bare_venv_asking_for_a_fixture_says_what_to_install(bare_venv: Path, tmp_path: Path) -> None:
    tests = """
    def test_plain():
        pass


    async def test_server(cyclehttp_server):
        pass
    """
    status, output = run_in_venv(bare_venv, user_project(tmp_path, tests))
    assert PLUGIN_ERROR not in output
    assert status == 1, output
    assert "1 passed, 1 error" in output, output
    assert (
        f"the cyclehttp_server fixture needs pytest-asyncio, which is not installed: {INSTALL_LINE}" in output
    )
    assert "Traceback" not in output and "ModuleNotFoundError" not in output

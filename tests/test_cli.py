"""The ``cyclehttp`` command: load_app() directly, and the real process via subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cyclehttp import App, __version__
from cyclehttp.serving.cli import TargetError, build_parser, load_app, main
from cyclehttp.version import BUILD

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30


def _console_script() -> str | None:
    candidate = Path(sys.executable).parent / "cyclehttp"
    if candidate.exists():
        return str(candidate)
    return shutil.which("cyclehttp")


COMMANDS = [pytest.param([sys.executable, "-m", "cyclehttp"], id="python-m")]
_script = _console_script()
COMMANDS.append(
    pytest.param(
        [_script] if _script else [],
        id="console-script",
        marks=pytest.mark.skipif(_script is None, reason="cyclehttp console script not installed"),
    )
)


def _env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CYCLEHTTP_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("cyclehttp: error:")]


def unique_module_name() -> str:
    return f"cyclehttp_cli_test_{uuid.uuid4().hex}"


@pytest.fixture
def clean_import_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """load_app() edits sys.path and imports modules: undo both."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("cyclehttp_cli_test_"):
            del sys.modules[name]


# --- load_app() ---------------------------------------------------------------


pytestmark_unit = pytest.mark.usefixtures("clean_import_state")


@pytestmark_unit
def test_load_app_route_list() -> None:
    app = load_app("examples.hello:routes", app_dir=str(REPO_ROOT))
    assert isinstance(app, App)
    assert ("POST", "/echo") in [(s.method, s.path) for s in app.routes]


@pytestmark_unit
def test_load_app_app_instance_and_factory(tmp_path: Path) -> None:
    name = unique_module_name()
    (tmp_path / f"{name}.py").write_text(
        "from cyclehttp import App, Response\n"
        "app = App([('GET', '/', Response.text('hi'))])\n"
        "def make_app():\n"
        "    return app\n"
        "def make_routes():\n"
        "    return [('GET', '/', 'hi')]\n"
        "class Holder:\n"
        "    app = app\n"
        "def broken():\n"
        "    raise RuntimeError('boom')\n"
        "number = 5\n"
        "bad_routes = [('GET', 'no-slash', 'x')]\n"
    )
    app = load_app(f"{name}:app", app_dir=str(tmp_path))
    assert isinstance(app, App)
    assert load_app(f"{name}:make_app", factory=True, app_dir=str(tmp_path)) is app
    assert load_app(f"{name}:Holder.app", app_dir=str(tmp_path)) is app
    routes_app = load_app(f"{name}:make_routes", factory=True, app_dir=str(tmp_path))
    assert [(s.method, s.path) for s in routes_app.routes] == [("GET", "/")]

    with pytest.raises(TargetError, match="is a callable, not an App; pass --factory"):
        load_app(f"{name}:make_app", app_dir=str(tmp_path))
    with pytest.raises(TargetError, match=r"factory .*broken.* raised RuntimeError: boom"):
        load_app(f"{name}:broken", factory=True, app_dir=str(tmp_path))
    with pytest.raises(TargetError, match="is not callable; drop --factory"):
        load_app(f"{name}:number", factory=True, app_dir=str(tmp_path))
    with pytest.raises(TargetError, match="is a int, not an App"):
        load_app(f"{name}:number", app_dir=str(tmp_path))
    with pytest.raises(TargetError, match=r"bad route list: .*starting with '/'"):
        load_app(f"{name}:bad_routes", app_dir=str(tmp_path))
    with pytest.raises(TargetError, match="has no attribute 'missing'"):
        load_app(f"{name}:missing", app_dir=str(tmp_path))
    with pytest.raises(TargetError, match=r"has no attribute 'Holder\.nope'"):
        load_app(f"{name}:Holder.nope", app_dir=str(tmp_path))


@pytestmark_unit
@pytest.mark.parametrize("target", ["nocolon", ":app", "module:", "a:b:c", ""])
def test_load_app_bad_target_form(target: str) -> None:
    with pytest.raises(TargetError, match="must be of the form 'module:attribute'"):
        load_app(target)


@pytestmark_unit
def test_load_app_missing_module() -> None:
    with pytest.raises(TargetError, match="cannot import module 'nomodule_cyclehttp_xyz'"):
        load_app("nomodule_cyclehttp_xyz:x")


@pytestmark_unit
def test_load_app_module_that_raises(tmp_path: Path) -> None:
    name = unique_module_name()
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('kaboom at import')\n")
    with pytest.raises(TargetError) as info:
        load_app(f"{name}:app", app_dir=str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"importing {name!r} failed: RuntimeError: kaboom at import")
    assert "Traceback" in message


@pytestmark_unit
def test_load_app_module_with_missing_dependency(tmp_path: Path) -> None:
    name = unique_module_name()
    (tmp_path / f"{name}.py").write_text("import not_installed_dependency_xyz\n")
    with pytest.raises(TargetError, match=f"importing '{name}' failed: ModuleNotFoundError"):
        load_app(f"{name}:app", app_dir=str(tmp_path))


def test_main_returns_2_for_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nocolon"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cyclehttp: error: target 'nocolon' must be of the form")


def test_parser_rejects_bad_port() -> None:
    parser = build_parser()
    assert parser.parse_args(["a:b", "--port", "0"]).port == 0
    assert parser.parse_args(["a:b", "--port", "65535"]).port == 65535
    for bad in ("99999", "-1", "http"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["a:b", "--port", bad])
        assert info.value.code == 2


# --- the process ----------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nomodule:x"], "cannot import module 'nomodule'"),
        (["examples.hello:missing"], "has no attribute 'missing'"),
        (["examples.hello:echo"], "is a callable, not an App; pass --factory"),
        (["nocolon"], "must be of the form 'module:attribute'"),
        (["examples.hello:routes", "--port", "99999"], "port must be from 0 to 65535"),
    ],
)
def test_cli_errors_exit_2(command: list[str], args: list[str], expected: str) -> None:
    result = run_cli(command, *args)
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_int_attribute_exits_2(command: list[str], tmp_path: Path) -> None:
    name = unique_module_name()
    (tmp_path / f"{name}.py").write_text("answer = 42\n")
    result = run_cli(command, f"{name}:answer", "--app-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1
    assert "is a int, not an App" in lines[0]
    assert result.stderr.splitlines()[0] == lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_module_raising_on_import_exits_2(command: list[str], tmp_path: Path) -> None:
    name = unique_module_name()
    (tmp_path / f"{name}.py").write_text("raise ValueError('broken at import')\n")
    result = run_cli(command, f"{name}:app", "--app-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("cyclehttp: error:")
    assert f"importing '{name}' failed: ValueError: broken at import" in first
    assert len(error_lines(result.stderr)) == 1
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_version(command: list[str]) -> None:
    result = run_cli(command, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cyclehttp {__version__} ({BUILD})"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _get_root(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
    except OSError:
        return None


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_factory_serves_and_stops_on_signal(
    command: list[str], signum: signal.Signals, tmp_path: Path
) -> None:
    name = unique_module_name()
    (tmp_path / f"{name}.py").write_text(
        "from cyclehttp import Response\n"
        "def create():\n"
        "    return [('GET', '/', Response.text('from factory'))]\n"
    )
    port = _free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, f"{name}:create", "--factory", "--app-dir", str(tmp_path), "--port", str(port)],
            cwd=REPO_ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            response = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and process.poll() is None:
                response = _get_root(port)
                if response:
                    break
                time.sleep(0.05)
            assert response is not None, f"server never answered: {log_path.read_text()}"
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
            assert response.endswith(b"\r\n\r\nfrom factory")

            process.send_signal(signum)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    output = log_path.read_text()
    assert f"listening on http://127.0.0.1:{port}" in output
    assert f"{signum.name} received, shutting down" in output


def test_number_options_refuse_nan_and_keep_inf_for_timeouts(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["app:app", "--graceful-timeout", "inf", "--backlog", " 64 "])
    assert (args.graceful_timeout, args.backlog) == (float("inf"), 64)
    for option, value, message in (
        ("--keep-alive-timeout", "nan", "expected seconds, got 'nan'"),
        ("--keep-alive-timeout", "-1", "expected seconds >= 0, got -1"),
        ("--backlog", "1.5", "expected a whole number, got '1.5'"),
        ("--fd", "-1", "expected a file descriptor number >= 0, got -1"),
    ):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(["app:app", option, value])
        assert exited.value.code == 2
        assert f"argument {option}: {message}" in capsys.readouterr().err

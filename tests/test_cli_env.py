"""Options from CYCLEHTTP_* variables, and the listening line of the real process."""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cyclehttp import __version__
from cyclehttp.serving.banner import module_version
from cyclehttp.serving.cli import _parse, build_parser, build_routes_parser
from cyclehttp.serving.envvars import apply_environment, env_name, parse_bool
from cyclehttp.version import BUILD

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30


def parse(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> argparse.Namespace:
    for name in list(os.environ):
        if name.startswith("CYCLEHTTP_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return _parse(build_parser(), argv)


def parse_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], *argv: str
) -> str:
    with pytest.raises(SystemExit) as info:
        parse(monkeypatch, env, *argv)
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cyclehttp: error:")]
    assert len(lines) == 1
    return lines[0]


# --- the rule -------------------------------------------------------------------


def test_every_option_has_a_variable_named_after_it() -> None:
    names = {env_name(action) for action in build_parser()._actions} - {None}
    for expected in (
        "CYCLEHTTP_APP",
        "CYCLEHTTP_PORT",
        "CYCLEHTTP_HOST",
        "CYCLEHTTP_WORKERS",
        "CYCLEHTTP_MAX_BODY_SIZE",
        "CYCLEHTTP_ACCESS_LOG",
        "CYCLEHTTP_NO_TIMING",
        "CYCLEHTTP_APP_DIR",
        "CYCLEHTTP_FACTORY",
        "CYCLEHTTP_METRICS_PATH",
        "CYCLEHTTP_FORWARDED_ALLOW_IPS",
    ):
        assert expected in names
    assert "CYCLEHTTP_HELP" not in names and "CYCLEHTTP_VERSION" not in names
    # one per option: every option string but --help/--version has exactly one
    options = [a for a in build_parser()._actions if a.option_strings and a.dest not in ("help", "version")]
    assert len(names) == len(options) + 1  # + the positional


@pytest.mark.parametrize("word", ["1", "true", "TRUE", "Yes", "on", " on "])
def test_parse_bool_true(word: str) -> None:
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["0", "false", "False", "NO", "off"])
def test_parse_bool_false(word: str) -> None:
    assert parse_bool(word) is False


@pytest.mark.parametrize("word", ["2", "maybe", "y", "enabled", "-1"])
def test_parse_bool_rejects(word: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected 1/0, true/false, yes/no or on/off"):
        parse_bool(word)


# --- values, by type --------------------------------------------------------------


def test_int_float_str_path_and_target(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(
        monkeypatch,
        {
            "CYCLEHTTP_APP": "examples.hello:routes",
            "CYCLEHTTP_PORT": "9123",
            "CYCLEHTTP_HOST": "0.0.0.0",
            "CYCLEHTTP_MAX_BODY_SIZE": "2048",
            "CYCLEHTTP_KEEP_ALIVE_TIMEOUT": "12.5",
            "CYCLEHTTP_SEND_TIMEOUT": "30",
            "CYCLEHTTP_METRICS_PATH": "/metrics",
            "CYCLEHTTP_APP_DIR": "/srv/app",
            "CYCLEHTTP_LOG_LEVEL": "debug",
            "CYCLEHTTP_WORKERS": "3",
        },
    )
    assert args.target == "examples.hello:routes"
    assert args.port == 9123
    assert args.host == "0.0.0.0"
    assert args.max_body_size == 2048
    assert args.keep_alive_timeout == 12.5
    assert args.send_timeout == 30.0
    assert args.metrics_path == "/metrics"
    assert args.app_dir == "/srv/app"
    assert args.log_level == "debug"
    assert args.workers == 3


@pytest.mark.parametrize(
    ("env", "timing", "access_log", "factory"),
    [
        ({}, True, False, False),
        (
            {"CYCLEHTTP_NO_TIMING": "1", "CYCLEHTTP_ACCESS_LOG": "yes", "CYCLEHTTP_FACTORY": "on"},
            False,
            True,
            True,
        ),
        (
            {"CYCLEHTTP_NO_TIMING": "false", "CYCLEHTTP_ACCESS_LOG": "0", "CYCLEHTTP_FACTORY": "OFF"},
            True,
            False,
            False,
        ),
    ],
)
def test_flags(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], timing: bool, access_log: bool, factory: bool
) -> None:
    args = parse(monkeypatch, env, "a:b")
    assert (args.timing, args.access_log, args.factory) == (timing, access_log, factory)


def test_precedence_cli_over_env_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse(monkeypatch, {}, "a:b").port == 8000
    assert parse(monkeypatch, {"CYCLEHTTP_PORT": "9000"}, "a:b").port == 9000
    assert parse(monkeypatch, {"CYCLEHTTP_PORT": "9000"}, "a:b", "--port", "9001").port == 9001
    assert parse(monkeypatch, {"CYCLEHTTP_APP": "env:app"}, "cli:app").target == "cli:app"
    # a flag given on the command line wins over a variable saying "off"
    assert parse(monkeypatch, {"CYCLEHTTP_ACCESS_LOG": "0"}, "a:b", "--access-log").access_log is True
    assert parse(monkeypatch, {"CYCLEHTTP_NO_TIMING": "no"}, "a:b", "--no-timing").timing is False


def test_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(monkeypatch, {"CYCLEHTTP_PORT": "", "CYCLEHTTP_ACCESS_LOG": ""}, "a:b")
    assert args.port == 8000 and args.access_log is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CYCLEHTTP_PORT", "abc", "CYCLEHTTP_PORT: port must be a number, got 'abc'"),
        ("CYCLEHTTP_PORT", "70000", "CYCLEHTTP_PORT: port must be from 0 to 65535, got 70000"),
        ("CYCLEHTTP_MAX_BODY_SIZE", "0", "CYCLEHTTP_MAX_BODY_SIZE: expected a number >= 1, got 0"),
        (
            "CYCLEHTTP_KEEP_ALIVE_TIMEOUT",
            "soon",
            "CYCLEHTTP_KEEP_ALIVE_TIMEOUT: expected seconds, got 'soon'",
        ),
        ("CYCLEHTTP_METRICS_PATH", "metrics", "CYCLEHTTP_METRICS_PATH: expected a path starting with '/'"),
        ("CYCLEHTTP_WORKERS", "many", "CYCLEHTTP_WORKERS: expected a number of processes or 'auto'"),
        ("CYCLEHTTP_LOG_LEVEL", "loud", "CYCLEHTTP_LOG_LEVEL: invalid choice: 'loud'"),
        ("CYCLEHTTP_ACCESS_LOG", "maybe", "CYCLEHTTP_ACCESS_LOG: expected 1/0, true/false, yes/no or on/off"),
        ("CYCLEHTTP_NO_TIMING", "2", "CYCLEHTTP_NO_TIMING: expected 1/0"),
    ],
)
def test_bad_values_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, message: str
) -> None:
    line = parse_error(monkeypatch, capsys, {name: value}, "a:b")
    assert line.startswith(f"cyclehttp: error: {message}")


def test_bad_env_value_matches_the_bad_option_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_env = parse_error(monkeypatch, capsys, {"CYCLEHTTP_PORT": "abc"}, "a:b")
    from_cli = parse_error(monkeypatch, capsys, {}, "a:b", "--port", "abc")
    assert from_env == "cyclehttp: error: CYCLEHTTP_PORT: port must be a number, got 'abc'"
    assert from_cli == "cyclehttp: error: argument --port: port must be a number, got 'abc'"


def test_no_target_anywhere_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = parse_error(monkeypatch, capsys, {})
    assert "module:attr (or set CYCLEHTTP_APP)" in line


def test_near_miss_warns_and_app_variables_are_left_alone() -> None:
    out = io.StringIO()
    parser = build_parser()
    apply_environment(
        parser,
        {"CYCLEHTTP_TIMING": "0", "CYCLEHTTP_PROT": "1", "CYCLEHTTP_DOWNLOADS": "/srv"},
        warnings=out,
    )
    text = out.getvalue()
    assert (
        "CYCLEHTTP_TIMING is not an option variable and is ignored; did you mean CYCLEHTTP_NO_TIMING?" in text
    )
    assert "CYCLEHTTP_PROT" in text and "CYCLEHTTP_PORT" in text
    assert "DOWNLOADS" not in text
    assert parser.parse_args(["a:b"]).timing is True


def test_routes_subcommand_reads_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLEHTTP_APP", "examples.hello:routes")
    monkeypatch.setenv("CYCLEHTTP_METRICS_PATH", "/m")
    args = _parse(build_routes_parser(), [])
    assert (args.target, args.metrics_path) == ("examples.hello:routes", "/m")


def _env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CYCLEHTTP_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def test_help_names_the_variables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "--help"],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for shown in (
        "(env: CYCLEHTTP_PORT)",
        "(env: CYCLEHTTP_HOST)",
        "(env: CYCLEHTTP_APP)",
        "(env: CYCLEHTTP_MAX_BODY_SIZE)",
        "(env: CYCLEHTTP_NO_TIMING=1)",
        "(env: CYCLEHTTP_ACCESS_LOG=1)",
    ):
        assert shown in text
    assert "The command line wins over the environment" in text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CYCLEHTTP_PORT": "abc"}, "cyclehttp: error: CYCLEHTTP_PORT: port must be a number, got 'abc'"),
        ({"CYCLEHTTP_APP": "nocolon"}, "cyclehttp: error: target 'nocolon' must be of the form"),
    ],
)
def test_process_bad_env_exits_2(env: dict[str, str], expected: str) -> None:
    args = [] if "CYCLEHTTP_APP" in env else ["examples.hello:routes"]
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", *args],
        cwd=REPO_ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("cyclehttp: error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), result.stderr


def test_process_version_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "--version"],
        cwd=REPO_ROOT,
        env=_env(CYCLEHTTP_PORT="abc"),  # --version needs nothing else, but env is read first
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    # a bad variable is still an error: the environment is checked before anything runs
    assert result.returncode == 2
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "--version"],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"cyclehttp {__version__} ({BUILD})"


# --- the listening line, from the real process -----------------------------------------


LINE = re.compile(r"cyclehttp (\S+) \((compiled|pure Python)\) listening on (\S+) \((.*)\)$")


def _serve_and_read_line(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[str, str, str]:
    """Start the CLI on port 0, wait for its listening line, make one request; the line's parts."""
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cyclehttp", *args],
            cwd=REPO_ROOT,
            env=_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            match = None
            deadline = time.monotonic() + TIMEOUT
            while match is None and time.monotonic() < deadline and process.poll() is None:
                for line in log_path.read_text().splitlines():
                    match = LINE.search(line) or match
                time.sleep(0.02)
            assert match is not None, f"no listening line (exit {process.poll()}): {log_path.read_text()}"
            version, build, url, details = match.groups()
            assert build == BUILD
            host, _, port = url.removeprefix("http://").rpartition(":")
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.settimeout(5)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"Hello, World!")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=TIMEOUT)
    assert len([line for line in log_path.read_text().splitlines() if " listening on " in line]) == 1
    return version, url, details


def test_startup_line_single_process(tmp_path: Path) -> None:
    version, url, details = _serve_and_read_line(
        tmp_path, ["--port", "0"], {"CYCLEHTTP_APP": "examples.hello:routes", "CYCLEHTTP_NO_TIMING": "1"}
    )
    assert version == __version__
    assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+", url) and not url.endswith(":0")
    assert details.startswith("1 process; ")
    assert f"uvloop {module_version('uvloop')}" in details
    assert f"httptools {module_version('httptools')}" in details
    assert re.search(r"brotli: (yes|no)", details)
    assert "timing off" in details and "access log off" in details


def test_startup_line_workers(tmp_path: Path) -> None:
    _, url, details = _serve_and_read_line(
        tmp_path,
        ["examples.hello:routes", "--workers", "2", "--access-log"],
        {"CYCLEHTTP_PORT": "0"},
    )
    assert url.startswith("http://127.0.0.1:")
    assert details.startswith("2 workers, ")
    assert "timing on" in details and "access log on" in details

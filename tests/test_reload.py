"""``--reload``: the reloader keeps the socket and replaces its server child on a change.

End-to-end tests run ``python -m cyclehttp mod:app --reload`` in its own process
group (killed whole in ``finally``), learn the child's pid from a ``/pid`` route
and check that every child they saw is gone at the end. Unit tests cover the
watchers and the child's command line in-process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cyclehttp.serving import reload
from cyclehttp.serving.cli import build_parser

TIMEOUT = 10.0

APP = """\
import os
from cyclehttp import App

app = App()
VALUE = {value!r}

@app.get("/")
def index(request):
    return VALUE

@app.get("/pid")
def pid(request):
    return str(os.getpid())
"""


# --- helpers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)


def get(port: int, path: str) -> bytes | None:
    """The body of ``GET path``, or None when nobody answers (yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return body if head.startswith(b"HTTP/1.1 200") else None


def write_app(path: Path, value: str, *, broken: bool = False) -> None:
    """Write the module and move its mtime forward: no reliance on the file system's granularity."""
    path.write_text(APP.format(value=value) + ("x = (\n" if broken else ""))
    later = time.time() + 2 + time.monotonic() % 1
    os.utime(path, (later, later))


class Reloading:
    """A ``cyclehttp --reload`` process: its port, log, and the child pids seen."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.pids: set[int] = set()

    def answer(self) -> tuple[bytes, int] | None:
        body, pid = get(self.port, "/"), get(self.port, "/pid")
        if body is None or pid is None:
            return None
        self.pids.add(int(pid))
        return body, int(pid)

    def wait_for(self, value: str) -> int:
        """Wait until the server answers ``value``; returns the serving child's pid."""
        found: list[int] = []

        def serves() -> bool:
            answer = self.answer()
            if answer is not None and answer[0] == value.encode():
                found.append(answer[1])
                return True
            return False

        wait_until(serves, f"the server answering {value!r}")
        return found[0]

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        """SIGTERM: exit status 0, and no child left."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(TIMEOUT) == 0, self.text()
        for pid in self.pids:
            wait_until(lambda pid=pid: not alive(pid), f"child {pid} gone")  # type: ignore[misc]


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[Callable[..., Reloading]]:
    started: list[Reloading] = []

    def start(*options: str, target: str = "mod:app", app_dir: Path = tmp_path) -> Reloading:
        port = free_port()
        log = tmp_path / f"server-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cyclehttp",
                    target,
                    "--reload",
                    "--port",
                    str(port),
                    "--app-dir",
                    str(app_dir),
                    *options,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("CYCLEHTTP_")},
            )
        served = Reloading(process, port, log)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            if served.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(served.process.pid, signal.SIGKILL)
                served.process.wait(TIMEOUT)
            for pid in served.pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


# --- end to end -----------------------------------------------------------------------


@pytest.mark.parametrize("watcher", ["watchfiles", "polling"])
def test_a_change_restarts_the_server_with_the_new_code(
    tmp_path: Path, reloading: Callable[..., Reloading], watcher: str
) -> None:
    if watcher == "watchfiles":
        pytest.importorskip("watchfiles")
    module = tmp_path / "mod.py"
    write_app(module, "one")
    served = reloading(*(["--reload-poll"] if watcher == "polling" else []))
    first = served.wait_for("one")
    write_app(module, "two")
    second = served.wait_for("two")
    assert second != first
    log = served.text()
    assert ("(watchfiles)" if watcher == "watchfiles" else "(polling every 0.5 s)") in log
    assert "mod.py changed: restarting the server" in log
    assert not alive(first)
    before = cpu_seconds(served.process.pid)
    time.sleep(1.0)
    assert cpu_seconds(served.process.pid) - before < 0.2  # the reloader sleeps between checks
    served.stop()
    assert "SIGTERM received: stopping the server" in served.text()


def test_a_syntax_error_keeps_the_reloader_up_until_the_file_is_fixed(
    tmp_path: Path, reloading: Callable[..., Reloading]
) -> None:
    module = tmp_path / "mod.py"
    write_app(module, "one")
    served = reloading()
    served.wait_for("one")
    write_app(module, "broken", broken=True)
    wait_until(lambda: "waiting for a file change" in served.text(), "the reloader reporting the exit")
    assert "SyntaxError" in served.text()
    assert served.process.poll() is None
    write_app(module, "fixed")
    served.wait_for("fixed")
    served.stop()


def test_a_reload_dir_is_watched_instead_of_the_app_dir(
    tmp_path: Path, reloading: Callable[..., Reloading]
) -> None:
    write_app(tmp_path / "mod.py", "one")
    other = tmp_path / "lib"
    other.mkdir()
    (other / "helper.py").write_text("X = 1\n")
    served = reloading("--reload-dir", str(other))
    first = served.wait_for("one")
    assert f"changes in {other} (" in served.text()
    (other / "helper.py").write_text("X = 2\n")
    later = time.time() + 2
    os.utime(other / "helper.py", (later, later))
    wait_until(lambda: (a := served.answer()) is not None and a[1] != first, "a new child")
    assert "helper.py changed" in served.text()
    served.stop()


def test_reload_with_workers_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cyclehttp",
            "mod:app",
            "--reload",
            "--workers",
            "2",
            "--app-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert "--reload and --workers cannot be used together" in done.stderr


def test_a_missing_reload_dir_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "mod:app", "--reload", "--reload-dir", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert "is not a directory" in done.stderr


# --- in process: watchers and the child's command line -----------------------------------


def test_the_polling_watcher_sees_new_changed_and_removed_files_only_where_it_should(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("a = 1\n")
    for ignored in ("__pycache__", ".git", "venv", ".venv", "node_modules", "site-packages"):
        (tmp_path / ignored).mkdir()
    watcher = reload.PollingWatcher([str(tmp_path)], threading.Event(), interval=0.01)
    assert watcher.wait() == []
    later = time.time() + 5
    os.utime(tmp_path / "a.py", (later, later))
    assert watcher.wait() == [str(tmp_path / "a.py")]
    (tmp_path / "b.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    for ignored in ("__pycache__", ".git", "venv", ".venv", "node_modules", "site-packages"):
        (tmp_path / ignored / "x.py").write_text("")
    assert watcher.wait() == [str(tmp_path / "b.py")]
    (tmp_path / "a.py").unlink()
    assert watcher.wait() == [str(tmp_path / "a.py")]


def test_the_polling_watcher_returns_at_once_when_stopped(tmp_path: Path) -> None:
    stop = threading.Event()
    watcher = reload.PollingWatcher([str(tmp_path)], stop, interval=30)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert watcher.wait() == []
    assert time.monotonic() - started < 5


def test_without_watchfiles_the_reloader_polls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles -> ImportError
    watcher = reload.make_watcher([str(tmp_path)], threading.Event())
    assert isinstance(watcher, reload.PollingWatcher)


def test_watched_files() -> None:
    assert reload.watched_file("/app/pkg/mod.py", "/app")
    assert not reload.watched_file("/app/pkg/mod.pyc", "/app")
    assert not reload.watched_file("/app/.venv/lib/x.py", "/app")
    assert not reload.watched_file("/app/pkg/__pycache__/mod.py", "/app")
    assert reload.watched_file("/home/me/.cache/app/mod.py", "/home/me/.cache/app")  # hidden above the root


def test_the_child_gets_every_resolved_option_and_not_the_reloaders(monkeypatch: pytest.MonkeyPatch) -> None:
    from cyclehttp.serving.envvars import apply_environment

    parser = build_parser()
    environ = {"CYCLEHTTP_MAX_BODY_SIZE": "1234", "CYCLEHTTP_RELOAD_DIR": "/a:/b", "MY_OWN": "x"}
    apply_environment(parser, environ)
    args = parser.parse_args(
        ["mod:app", "--reload", "--port", "9", "--workers", "1", "--no-timing", "--graceful-timeout", "0.5"]
    )
    assert args.reload_dir == "/a:/b"
    command = reload.child_arguments(parser, args, 7)
    assert command[0] == "mod:app" and command[-1] == "--fd=7"
    assert "--max-body-size=1234" in command and "--graceful-timeout=0.5" in command
    assert "--no-timing" in command and "--access-log" not in command
    assert not any(part.startswith(("--reload", "--port", "--workers", "--host")) for part in command)
    child = build_parser().parse_args(command)
    assert (child.max_body_size, child.timing, child.fd) == (1234, False, 7)
    assert reload.child_environment(parser, environ) == {"MY_OWN": "x"}


def test_reload_dir_on_the_command_line_replaces_the_environments() -> None:
    from cyclehttp.serving.envvars import apply_environment

    parser = build_parser()
    apply_environment(parser, {"CYCLEHTTP_RELOAD_DIR": "/env"})
    args = parser.parse_args(["mod:app", "--reload-dir", "/a", "--reload-dir", "/b"])
    assert args.reload_dir == ["/a", "/b"]

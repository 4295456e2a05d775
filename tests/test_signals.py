"""Stop signals at the edges of a serving process's life: during its startup hooks, and under ``--reload``.

Every test runs the real command in a subprocess, in a session of its own, so that a signal can go
to the whole process group as a terminal's Ctrl-C does (``os.killpg``); whatever is left is killed
whole in ``finally``. The listening socket is opened here, on port 0, and passed with ``--fd`` (or
gunicorn's ``fd://``): the test knows the address before the server starts, and it can tell
afterwards whether the server ever accepted a connection, by accepting it itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TIMEOUT = 15.0

HOOKS_APP = """
import asyncio
import os
from pathlib import Path

from cyclehttp import App

MARKS = Path(__file__).with_name("marks.txt")
ANSWER = Path(__file__).with_name("database-answers")
app = App()


def mark(event):
    with MARKS.open("a") as marks:
        marks.write(f"{event} {os.getpid()}\\n")


@app.on_startup
def open_pool(app):
    mark("pool-opened")


@app.on_shutdown
def close_pool(app):
    mark("pool-closed")


@app.on_startup
async def connect(app):
    mark("connecting")
    try:  # a database that answers when the test says so, or after CONNECT_SECONDS
        for _ in range(int(float(os.environ["CONNECT_SECONDS"]) * 100)):
            if ANSWER.exists():
                break
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        mark("connect-cancelled")
        raise
    mark("connected")


@app.on_shutdown
def disconnect(app):
    mark("disconnected")


@app.on_startup
def warm_cache():
    mark("cache-warmed")


@app.on_shutdown
def drop_cache():
    mark("cache-dropped")


@app.get("/")
def index(request):
    return "served"
"""

# A stop signal while "connect" runs: it finishes, "warm_cache" never starts, what ran is undone.
RAN_TO_THE_END = ["pool-opened", "connecting", "connected", "disconnected", "pool-closed"]
"""The marks of a start that finished and was undone: every shutdown hook ran, last declared first."""

SLOW_APP = """
import asyncio
import os
import sys

from cyclehttp import App

app = App()


@app.get("/")
def index(request):
    return "ready"


@app.get("/slow")
async def slow(request):
    print("handler started", file=sys.stderr, flush=True)
    await asyncio.sleep(float(os.environ["SLOW_SECONDS"]))
    return "slow done"
"""


# --- helpers ------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], object], what: str, log: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            output = log.read_text(errors="replace")
            raise AssertionError(f"timed out waiting until {what}; output:\n{output}")
        time.sleep(0.02)


def marks(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "marks.txt"
    if not path.exists():
        return []
    return [(event, int(pid)) for event, pid in (line.split() for line in path.read_text().splitlines())]


def events(tmp_path: Path, pid: int | None = None) -> list[str]:
    return [event for event, p in marks(tmp_path) if pid is None or p == pid]


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


class Running:
    """A command started in its own session on the inherited listening socket ``listener``."""

    def __init__(self, process: subprocess.Popen[bytes], listener: socket.socket, log: Path) -> None:
        self.process = process
        self.listener = listener
        self.log = log

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the whole process group, as a terminal's Ctrl-C does."""
        os.killpg(self.process.pid, signum)

    def send(self, signum: int, *, to_group: bool) -> None:
        """``signum`` to the process group (a terminal), or to the process alone (a process manager)."""
        if to_group:
            self.signal_group(signum)
        else:
            self.process.send_signal(signum)

    def exit_status(self) -> int:
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {TIMEOUT} s later; output:\n{self.text()}") from None

    def accepts_queued(self, client: socket.socket) -> bool:
        """Whether ``client``'s connection still waits in the backlog: the server never accepted it."""
        self.listener.settimeout(TIMEOUT)
        try:
            accepted, address = self.listener.accept()
        except TimeoutError:
            return False
        accepted.close()
        return bool(address == client.getsockname())


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(command: list[str], app: str, **env: str) -> Running:
        (tmp_path / "sigapp.py").write_text(app)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        fd = listener.fileno()
        log = tmp_path / f"out-{len(started)}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("CYCLEHTTP_", "LISTEN_"))}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [arg.replace("{fd}", str(fd)) for arg in command],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                start_new_session=True,
                env={**environ, "PYTHONUNBUFFERED": "1", **env},
            )
        running = Running(process, listener, log)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            if running.process.poll() is None or not group_gone(running.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(TIMEOUT)
            running.listener.close()


def cyclehttp(tmp_path: Path, *options: str) -> list[str]:
    """The command line serving sigapp:app on the test's socket (``{fd}`` is filled in by ``run``)."""
    return [
        sys.executable,
        "-m",
        "cyclehttp",
        "sigapp:app",
        "--fd",
        "{fd}",
        "--app-dir",
        str(tmp_path),
        *options,
    ]


def request(port: int, path: str) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    return client


def read_all(client: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(65536):
            data += chunk
    return data


# --- a signal while the startup hooks run ---------------------------------------------------------------

SIGNALS = [
    pytest.param(signal.SIGTERM, False, id="SIGTERM-to-the-process"),
    pytest.param(signal.SIGINT, True, id="SIGINT-to-the-group"),
]


@pytest.mark.parametrize(("signum", "to_group"), SIGNALS)
def test_a_signal_during_the_startup_hooks_runs_the_shutdown_hooks_and_serves_nothing(
    tmp_path: Path, run: Callable[..., Running], signum: signal.Signals, to_group: bool
) -> None:
    served = run(cyclehttp(tmp_path), HOOKS_APP, CONNECT_SECONDS="60")
    wait_until(lambda: "connecting" in events(tmp_path), "the slow startup hook runs", served.log)
    client = socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT)  # waits in the backlog
    with client:
        served.send(signum, to_group=to_group)
        wait_until(lambda: "received during startup" in served.text(), "the signal is seen", served.log)
        (tmp_path / "database-answers").touch()  # the running hook can finish now
        assert served.exit_status() == 0, served.text()
        assert events(tmp_path) == RAN_TO_THE_END  # the running hook finished, then the shutdown hooks ran
        assert served.accepts_queued(client), "the server accepted a connection after the signal"
    output = served.text()
    assert f"{signum.name} received during startup" in output
    assert "Traceback" not in output


def test_a_second_signal_during_the_startup_hooks_cancels_them(
    tmp_path: Path, run: Callable[..., Running]
) -> None:
    served = run(cyclehttp(tmp_path), HOOKS_APP, CONNECT_SECONDS="60")
    wait_until(lambda: "connecting" in events(tmp_path), "the slow startup hook runs", served.log)
    served.signal_group(signal.SIGTERM)
    wait_until(lambda: "received during startup" in served.text(), "the first signal is seen", served.log)
    assert served.process.poll() is None  # waiting for the hook: it has 59 s to go
    served.signal_group(signal.SIGINT)
    assert served.exit_status() == 0, served.text()
    # The cancelled hook is undone by nothing (it raised); the one before it is.
    assert events(tmp_path) == ["pool-opened", "connecting", "connect-cancelled", "pool-closed"]
    assert "second signal during startup: cancelling the startup hooks" in served.text()


@pytest.mark.parametrize(("signum", "to_group"), SIGNALS)
def test_workers_run_their_shutdown_hooks_after_a_signal_during_startup(
    tmp_path: Path, run: Callable[..., Running], signum: signal.Signals, to_group: bool
) -> None:
    served = run(cyclehttp(tmp_path, "--workers", "2"), HOOKS_APP, CONNECT_SECONDS="60")
    wait_until(lambda: events(tmp_path).count("connecting") == 2, "both workers' hooks run", served.log)
    workers = {pid for event, pid in marks(tmp_path) if event == "connecting"}
    client = socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT)
    with client:
        served.send(signum, to_group=to_group)  # to the supervisor, or to every process
        wait_until(
            lambda: served.text().count("SIGTERM received during startup") == 2,
            "both workers stop",
            served.log,
        )
        (tmp_path / "database-answers").touch()
        assert served.exit_status() == 0, served.text()
        for pid in workers:
            assert events(tmp_path, pid) == RAN_TO_THE_END
        assert served.accepts_queued(client), "a worker accepted a connection after the signal"
    assert "was killed" not in served.text()
    wait_until(lambda: group_gone(served.process.pid), "no process is left", served.log)


def test_the_gunicorn_worker_runs_its_shutdown_hooks_after_a_sigterm_during_startup(
    tmp_path: Path, run: Callable[..., Running]
) -> None:
    gunicorn_config = pytest.importorskip("gunicorn.config")
    quiet = any(setting.name == "control_socket_disable" for setting in gunicorn_config.KNOWN_SETTINGS)
    command = [
        sys.executable, "-m", "gunicorn", "-k", "cyclehttp.serving.gunicorn.CycleWorker", "--bind", "fd://{fd}",
        "--workers", "1", *(["--no-control-socket"] * quiet), "sigapp:app",
    ]  # fmt: skip
    served = run(command, HOOKS_APP, CONNECT_SECONDS="1")  # the worker does not log when it sees the signal
    wait_until(lambda: "connecting" in events(tmp_path), "the slow startup hook runs", served.log)
    served.process.send_signal(signal.SIGTERM)
    assert served.exit_status() == 0, served.text()
    assert events(tmp_path) == RAN_TO_THE_END


# --- Ctrl-C under --reload -------------------------------------------------------------------------------


@pytest.mark.parametrize("watcher", ["watchfiles", "polling"])
def test_ctrl_c_under_reload_lets_the_request_in_flight_finish(
    tmp_path: Path, run: Callable[..., Running], watcher: str
) -> None:
    if watcher == "watchfiles":
        pytest.importorskip("watchfiles")  # the reloader then has a thread when it starts the child
    options = ["--reload", *(["--reload-poll"] if watcher == "polling" else [])]
    served = run(cyclehttp(tmp_path, *options), SLOW_APP, SLOW_SECONDS="1")
    with request(served.port, "/") as ready:  # answered once the child serves
        assert read_all(ready).endswith(b"\r\n\r\nready"), served.text()
    with request(served.port, "/slow") as client:
        wait_until(lambda: "handler started" in served.text(), "the slow handler runs", served.log)
        served.signal_group(signal.SIGINT)  # what Ctrl-C in the terminal does
        response = read_all(client)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), served.text()
    assert body == b"slow done"
    assert b"content-length: 9" in head.lower().split(b"\r\n")
    assert served.exit_status() == 0, served.text()
    wait_until(lambda: group_gone(served.process.pid), "the server child is gone too", served.log)
    output = served.text()
    assert "SIGINT received: stopping the server" in output
    assert "closes its connections now" not in output  # the reloader saw one signal, not two
    assert "second signal" not in output  # and so did the server
    assert "killing" not in output


def test_a_second_ctrl_c_under_reload_closes_the_connections_at_once(
    tmp_path: Path, run: Callable[..., Running]
) -> None:
    served = run(
        cyclehttp(tmp_path, "--reload", "--reload-poll", "--graceful-timeout", "60"),
        SLOW_APP,
        SLOW_SECONDS="60",
    )
    with request(served.port, "/") as ready:
        assert read_all(ready).endswith(b"\r\n\r\nready"), served.text()
    with request(served.port, "/slow") as client:
        wait_until(lambda: "handler started" in served.text(), "the slow handler runs", served.log)
        served.signal_group(signal.SIGINT)
        wait_until(lambda: "shutting down" in served.text(), "the child drains", served.log)
        assert served.process.poll() is None  # draining: the handler has 59 s to go
        served.signal_group(signal.SIGINT)
        assert read_all(client) == b""  # closed without an answer
    assert served.exit_status() == 0, served.text()
    wait_until(lambda: group_gone(served.process.pid), "the server child is gone too", served.log)
    output = served.text()
    assert "signal received while the server drains: it closes its connections now" in output
    assert "second signal: closing every connection now" in output

"""cyclehttp under the real gunicorn: ``gunicorn -k cyclehttp.gunicorn_worker.CycleWorker``.

Every test runs gunicorn's arbiter as a subprocess, talks HTTP to it over a
real socket, and at teardown stops the arbiter and checks that no worker
process is left. Every wait has a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

gunicorn_config = pytest.importorskip("gunicorn.config")

from cyclehttp.config import DEFAULT_MAX_HEADER_SIZE  # noqa: E402
from cyclehttp.serving.gunicorn import config_from_gunicorn  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WORKER = "cyclehttp.serving.gunicorn.CycleWorker"
DEADLINE = 15.0  # seconds any one wait may take before the test fails

# The app the tests serve: a static route, the worker's pid, a slow async
# route that says when it has started, and routes that block the loop.
TEST_APP = """
import asyncio
import os
import time
from pathlib import Path

from cyclehttp import Response

STARTED = Path(__file__).with_name("slow-started")


def pid(request):
    return str(os.getpid())


async def slow(request):
    STARTED.write_text(str(os.getpid()))
    await asyncio.sleep(0.5)
    return "slow done"


def block(request):
    time.sleep(0.2)
    return str(os.getpid())


def hang(request):
    time.sleep(10)
    return "woke up"


def fail(request):
    raise RuntimeError("this handler always fails")


def make_routes():
    return routes


routes = [
    ("GET", "/", Response.text("static")),
    ("GET", "/pid", pid),
    ("GET", "/slow", slow),
    ("GET", "/block", block),
    ("GET", "/hang", hang),
    ("GET", "/fail", fail),
]
"""

Address = tuple[str, int] | str  # (host, port) or a Unix socket path


class Reply:
    """One HTTP response, read to EOF (the requests say ``Connection: close``)."""

    def __init__(self, raw: bytes) -> None:
        head, sep, self.body = raw.partition(b"\r\n\r\n")
        assert sep, f"incomplete response: {raw!r}"
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        assert len(self.body) == int(self.headers["content-length"]), "truncated body"

    @property
    def text(self) -> str:
        return self.body.decode()


def connect(address: Address, deadline: float = DEADLINE) -> socket.socket:
    """A connected socket, retrying while gunicorn has not bound yet."""
    give_up = time.monotonic() + deadline
    while True:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(DEADLINE)
        try:
            sock.connect(address)
            return sock
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)
        except BaseException:
            sock.close()
            raise


def send(sock: socket.socket, method: str, path: str, body: bytes = b"") -> None:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)


def receive(sock: socket.socket) -> Reply:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return Reply(b"".join(chunks))


def request(address: Address, method: str, path: str, body: bytes = b"") -> Reply:
    with connect(address) as sock:
        send(sock, method, path, body)
        return receive(sock)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> set[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, timeout=DEADLINE)
    return {int(line) for line in result.stdout.split()}


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_until(condition: Any, what: str, deadline: float = DEADLINE) -> None:
    give_up = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


class Gunicorn:
    """One gunicorn arbiter: ``start`` it, then ``stop`` (the fixture does) and check no worker is left."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.address: Address = ""
        self.worker_pids: set[int] = set()
        self._stderr_path = workdir / "gunicorn.err"

    def start(self, target: str, *options: str, unix: str | None = None) -> Address:
        """Start gunicorn on a free port (retried once if another process takes it) or on ``unix``."""
        for attempt in range(2):
            if unix is not None:
                self.address, bind = unix, f"unix:{unix}"
            else:
                port = free_port()
                self.address, bind = ("127.0.0.1", port), f"127.0.0.1:{port}"
            args = [sys.executable, "-m", "gunicorn", "-k", WORKER, "--bind", bind, *_quiet_options()]
            with open(self._stderr_path, "wb") as stderr:
                self.process = subprocess.Popen(
                    [*args, *options, target], cwd=self.workdir, stdout=stderr, stderr=stderr
                )
            if unix is not None or not self._lost_port_race():
                return self.address
            self.process.wait(timeout=DEADLINE)
            assert attempt == 0, "the port was taken twice in a row"
        raise AssertionError("unreachable")

    def _lost_port_race(self) -> bool:
        """True when gunicorn exited because another process bound the port first."""
        assert self.process is not None
        try:
            self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return False
        return "Address already in use" in self.stderr

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def get_pid(self) -> int:
        """The pid of the worker that answers ``GET /pid`` (remembered for the leftover check)."""
        reply = request(self.address, "GET", "/pid")
        assert reply.status == 200
        worker = int(reply.text)
        self.worker_pids.add(worker)
        return worker

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait(timeout=DEADLINE + 15)

    def stop(self) -> None:
        """SIGTERM the arbiter (SIGKILL if it hangs), then make sure every worker is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.worker_pids |= children(self.pid)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=DEADLINE + 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=DEADLINE)
                raise AssertionError(f"gunicorn ignored SIGTERM:\n{self.stderr}") from None
        left = set()
        try:
            wait_until(lambda: not any(is_running(pid) for pid in self.worker_pids), "the workers exit")
        except AssertionError:
            left = {pid for pid in self.worker_pids if is_running(pid)}
            for pid in left:
                os.kill(pid, signal.SIGKILL)
        assert not left, f"workers {left} outlived the arbiter:\n{self.stderr}"


def _quiet_options() -> list[str]:
    # Recent gunicorn opens a control socket under $HOME unless told not to.
    if any(setting.name == "control_socket_disable" for setting in gunicorn_config.KNOWN_SETTINGS):
        return ["--no-control-socket"]
    return []


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "gunicorn_test_app.py").write_text(textwrap.dedent(TEST_APP))
    return tmp_path


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path must fit in 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="cg", dir="/tmp") as path:
        yield Path(path)


APP = "gunicorn_test_app:routes"


def test_serves_the_example_app(gunicorn: Gunicorn) -> None:
    address = gunicorn.start("examples.hello:routes", "--chdir", str(REPO))
    hello = request(address, "GET", "/")
    assert (hello.status, hello.text) == (200, "Hello, World!")
    assert hello.headers["content-type"].startswith("text/plain")
    echo = request(address, "POST", "/echo", b"ping \x00\xff pong")
    assert (echo.status, echo.body) == (200, b"ping \x00\xff pong")
    assert request(address, "GET", "/nope").status == 404


def test_two_workers_answer(gunicorn: Gunicorn, app_dir: Path) -> None:
    address = gunicorn.start(APP, "--pythonpath", str(app_dir), "--workers", "2")
    seen: set[int] = set()
    blocked: list[int] = []

    def block() -> None:
        blocked.append(int(request(address, "GET", "/block").text))

    def two_seen() -> bool:
        # While one worker's loop is blocked in /block, the other accepts /pid.
        thread = threading.Thread(target=block)
        thread.start()
        time.sleep(0.05)
        seen.add(gunicorn.get_pid())
        thread.join(DEADLINE)
        seen.update(blocked)
        return len(seen) == 2

    wait_until(two_seen, "two workers answered")
    assert seen <= children(gunicorn.pid)
    assert gunicorn.pid not in seen


def test_sigterm_finishes_the_request_in_flight(gunicorn: Gunicorn, app_dir: Path) -> None:
    address = gunicorn.start(APP, "--pythonpath", str(app_dir))
    started = app_dir / "slow-started"
    with connect(address) as sock:
        send(sock, "GET", "/slow")
        wait_until(started.exists, "the /slow handler started")
        gunicorn.worker_pids.add(int(started.read_text()))
        os.kill(gunicorn.pid, signal.SIGTERM)
        reply = receive(sock)
    assert (reply.status, reply.text) == (200, "slow done")
    assert reply.headers["connection"] == "close"
    assert gunicorn.wait() == 0, gunicorn.stderr


def test_a_killed_worker_is_replaced(gunicorn: Gunicorn, app_dir: Path) -> None:
    address = gunicorn.start(APP, "--pythonpath", str(app_dir))
    first = gunicorn.get_pid()
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: gunicorn.get_pid() != first, "a new worker answers")
    assert request(address, "GET", "/").text == "static"
    assert not is_running(first)


def test_an_idle_worker_keeps_its_heartbeat(gunicorn: Gunicorn, app_dir: Path) -> None:
    gunicorn.start(APP, "--pythonpath", str(app_dir), "--timeout", "2")
    before = gunicorn.get_pid()
    time.sleep(3)  # longer than --timeout: a worker that stopped notifying would be killed
    assert gunicorn.get_pid() == before
    assert "WORKER TIMEOUT" not in gunicorn.stderr


def test_a_blocked_worker_is_killed_and_replaced(gunicorn: Gunicorn, app_dir: Path) -> None:
    gunicorn.start(APP, "--pythonpath", str(app_dir), "--timeout", "2")
    blocked = gunicorn.get_pid()
    with connect(gunicorn.address) as sock:
        send(sock, "GET", "/hang")  # blocks the loop for 10 s: the heartbeat stops
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(65536) == b""  # the worker died with the connection open
    wait_until(lambda: not is_running(blocked), "the blocked worker is gone")
    assert gunicorn.get_pid() != blocked
    assert "WORKER TIMEOUT" in gunicorn.stderr
    assert "the event loop was blocked past --timeout" in gunicorn.stderr
    assert "time.sleep(10)" in gunicorn.stderr  # where it was blocked


def test_workers_exit_when_the_arbiter_dies(gunicorn: Gunicorn, app_dir: Path) -> None:
    gunicorn.start(APP, "--pythonpath", str(app_dir), "--workers", "2")
    workers = children(gunicorn.pid)
    gunicorn.worker_pids |= workers
    assert len(workers) == 2
    os.kill(gunicorn.pid, signal.SIGKILL)
    gunicorn.wait()
    wait_until(lambda: not any(is_running(pid) for pid in workers), "the orphaned workers exit")


def test_max_requests_recycles_the_worker(gunicorn: Gunicorn, app_dir: Path) -> None:
    gunicorn.start(APP, "--pythonpath", str(app_dir), "--max-requests", "5")
    first = {gunicorn.get_pid() for _ in range(5)}
    assert len(first) == 1
    (old,) = first
    wait_until(lambda: gunicorn.get_pid() != old, "a new worker answers after 5 requests")
    wait_until(lambda: not is_running(old), "the recycled worker exits")
    assert "Autorestarting worker" in gunicorn.stderr


def test_a_bad_target_stops_gunicorn(gunicorn: Gunicorn, app_dir: Path) -> None:
    gunicorn.start("nosuchmodule:app", "--pythonpath", str(app_dir))
    status = gunicorn.wait()
    assert status == 4  # gunicorn's APP_LOAD_ERROR: the arbiter halts instead of respawning
    assert "cyclehttp: error: cannot import module 'nosuchmodule'" in gunicorn.stderr


def test_a_target_that_is_not_an_app_stops_gunicorn(gunicorn: Gunicorn, app_dir: Path) -> None:
    gunicorn.start("gunicorn_test_app:pid", "--pythonpath", str(app_dir))
    assert gunicorn.wait() == 4
    assert "cyclehttp: error: 'gunicorn_test_app:pid' is a callable, not an App" in gunicorn.stderr


def test_unix_socket_and_a_factory_target(gunicorn: Gunicorn, app_dir: Path, short_tmp: Path) -> None:
    path = str(short_tmp / "s.sock")
    gunicorn.start("gunicorn_test_app:make_routes()", "--pythonpath", str(app_dir), unix=path)
    reply = request(path, "GET", "/")
    assert (reply.status, reply.text) == (200, "static")
    gunicorn.get_pid()


def test_logs_go_where_gunicorn_says(gunicorn: Gunicorn, app_dir: Path) -> None:
    access, errors = app_dir / "access.log", app_dir / "error.log"
    address = gunicorn.start(
        APP, "--pythonpath", str(app_dir), "--access-logfile", str(access), "--error-logfile", str(errors)
    )
    assert request(address, "GET", "/").status == 200
    wait_until(lambda: '"GET / HTTP/1.1" 200 6' in access.read_text(), "the access line is written")
    assert request(address, "GET", "/fail").status == 500
    wait_until(lambda: "this handler always fails" in errors.read_text(), "the traceback is logged")
    # SIGUSR1 (logrotate's signal) makes the arbiter and the workers reopen their files.
    access.rename(app_dir / "access.log.1")
    os.kill(gunicorn.pid, signal.SIGUSR1)
    wait_until(access.exists, "the access log is reopened")

    def logged_to_the_new_file() -> bool:
        request(address, "GET", "/")
        return '"GET / HTTP/1.1" 200' in access.read_text()

    wait_until(logged_to_the_new_file, "the worker writes to the new file")


def test_settings_mapping() -> None:
    cfg = gunicorn_config.Config()
    config = config_from_gunicorn(cfg, access_log=True)
    assert config.keep_alive_timeout == 2.0  # gunicorn's default keep-alive wins
    assert config.graceful_timeout == 30.0
    assert config.max_url_length == 4094
    assert config.max_header_size == DEFAULT_MAX_HEADER_SIZE  # a per-field limit cannot lower the head's
    assert config.max_connections == 1000
    assert config.access_log is True
    for name, value in [
        ("keepalive", 0),
        ("limit_request_line", 0),
        ("limit_request_field_size", 65536),
        ("worker_connections", 50),
        ("graceful_timeout", 3),
    ]:
        cfg.set(name, value)
    config = config_from_gunicorn(cfg)
    assert config.keep_alive_timeout == 1.0
    assert config.max_header_size == 65536
    assert config.max_url_length == 65536  # 0: bounded by the head limit only
    assert config.max_connections == 50
    assert config.graceful_timeout == 3.0
    assert config.access_log is False

"""Where the server listens: TCP, --uds, --fd, systemd socket activation, --backlog.

``open_listeners`` is tested in this process; the flags through the real CLI in a
subprocess, each served request checked with a real HTTP exchange over the socket.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from cyclehttp import App, Response
from cyclehttp.serving.cli import build_parser
from cyclehttp.serving.listeners import ListenError, close_listeners, describe, open_listeners
from cyclehttp.serving.server import Server

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0
HELLO = b"\r\n\r\nHello, World!"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX paths are limited to 107 bytes, tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="chl-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def no_activation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process itself must never look socket-activated."""
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)


def http_get(family: socket.AddressFamily, address: str | tuple[Any, ...], path: str = "/") -> bytes:
    """One request with ``Connection: close``; the whole response, read until the server closes."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def assert_hello(response: bytes) -> None:
    assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response
    assert response.endswith(HELLO), response


def make_unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    return sock


def make_stale_socket(path: Path) -> None:
    """A socket file nobody listens on: what a killed server leaves behind."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


# --- the CLI in a subprocess ------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


CLI = [sys.executable, "-m", "cyclehttp", "examples.hello:routes"]

# Plays systemd: puts the listening socket on fd 3, sets LISTEN_PID to its own pid (the one
# the CLI runs in) and runs the CLI; afterwards reports whether the variables were unset.
SYSTEMD_WRAPPER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "web"
from cyclehttp.serving.cli import main
status = main(["examples.hello:routes", *sys.argv[2:]])
print("LISTEN_ vars left:", sorted(k for k in os.environ if k.startswith("LISTEN_")), flush=True)
sys.exit(status)
"""


class Running:
    """A server process whose stderr goes to a file; killed at the end whatever happens."""

    def __init__(self, command: Sequence[str], log: Path, pass_fds: Sequence[int] = (), **env: str) -> None:
        self.log = log
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=_env(**env),
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            pass_fds=tuple(pass_fds),
            text=True,
        )

    def listening(self) -> list[str]:
        """Wait for the "listening on" lines; what the server says it listens on."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.findall(r"listening on (\S+)", self.log.read_text())
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(
            f"the server never listened (exit {self.process.poll()}): {self.log.read_text()}"
        )

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=TIMEOUT)

    def stdout(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()


class StartServer(Protocol):
    def __call__(self, command: Sequence[str], pass_fds: Sequence[int] = (), **env: str) -> Running: ...


@pytest.fixture
def run_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start server processes (``run_server(command, pass_fds, **env)``); all killed at teardown."""
    started: list[Running] = []

    def start(command: Sequence[str], pass_fds: Sequence[int] = (), **env: str) -> Running:
        running = Running(command, tmp_path / f"server{len(started)}.log", pass_fds, **env)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.close()


def run_cli(*args: str, pass_fds: Sequence[int] = ()) -> subprocess.CompletedProcess[str]:
    """A CLI run expected to exit by itself (an error)."""
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        pass_fds=tuple(pass_fds),
        check=False,
    )


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("cyclehttp: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


# --- TCP ------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_activation")
def test_tcp_ipv4() -> None:
    socks = open_listeners(host="127.0.0.1", port=0, backlog=16)
    try:
        assert len(socks) == 1
        sock = socks[0]
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert not sock.get_inheritable()
        port = sock.getsockname()[1]
        assert port != 0
        assert describe(sock) == f"http://127.0.0.1:{port}"
    finally:
        close_listeners(socks)
    assert sock.fileno() == -1


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.usefixtures("no_activation")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_tcp_ipv6_loopback(host: str) -> None:
    socks = open_listeners(host=host, port=0)
    try:
        assert [s.family for s in socks] == [socket.AF_INET6]
        port = socks[0].getsockname()[1]
        assert describe(socks[0]) == f"http://[::1]:{port}"
    finally:
        close_listeners(socks)


@pytest.mark.usefixtures("no_activation")
def test_reuse_port_lets_two_sockets_share_a_port() -> None:
    first = open_listeners(port=0, reuse_port=True)
    try:
        port = first[0].getsockname()[1]
        assert first[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        second = open_listeners(port=port, reuse_port=True)
        try:
            assert second[0].getsockname()[1] == port
        finally:
            close_listeners(second)
        with pytest.raises(OSError):  # without SO_REUSEPORT the port is taken
            close_listeners(open_listeners(port=port))
    finally:
        close_listeners(first)


@pytest.mark.usefixtures("no_activation")
def test_conflicting_options(short_dir: Path) -> None:
    with pytest.raises(ListenError, match="--uds and --fd both"):
        open_listeners(uds=str(short_dir / "s"), fd=0)
    with pytest.raises(ListenError, match="SO_REUSEPORT only applies"):
        open_listeners(uds=str(short_dir / "s"), reuse_port=True)
    with pytest.raises(ListenError, match="SO_REUSEPORT only applies"):
        open_listeners(fd=0, reuse_port=True)
    with pytest.raises(ListenError, match="backlog must be a number >= 1"):
        open_listeners(port=0, backlog=0)
    assert not (short_dir / "s").exists()


def test_cli_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port))
    assert result.returncode == 1, result.stderr
    assert error_line(result.stderr).startswith(f"cyclehttp: error: cannot listen on 127.0.0.1:{port}: ")


# --- --uds -------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_activation")
def test_uds_mode_describe_and_cleanup(short_dir: Path) -> None:
    path = short_dir / "app.sock"
    socks = open_listeners(uds=str(path))
    assert describe(socks[0]) == f"unix:{path}"
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    assert not socks[0].getblocking()
    close_listeners(socks)
    assert not path.exists()


@pytest.mark.usefixtures("no_activation")
def test_uds_cleanup_leaves_a_replacement_alone(short_dir: Path) -> None:
    path = short_dir / "app.sock"
    socks = open_listeners(uds=str(path))
    path.unlink()
    path.write_text("someone else's")
    close_listeners(socks)
    assert path.read_text() == "someone else's"


@pytest.mark.usefixtures("no_activation")
def test_uds_stale_socket_is_replaced(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = short_dir / "app.sock"
    make_stale_socket(path)
    with caplog.at_level("INFO", logger="cyclehttp"):
        socks = open_listeners(uds=str(path))
    try:
        assert f"removing stale socket {path} (nothing listens on it)" in caplog.messages
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(TIMEOUT)
            client.connect(str(path))  # ours, listening
    finally:
        close_listeners(socks)


@pytest.mark.usefixtures("no_activation")
def test_uds_live_socket_and_other_files_are_refused(short_dir: Path) -> None:
    live = short_dir / "live.sock"
    with make_unix_listener(live):
        with pytest.raises(ListenError, match=f"another server is listening on {live}"):
            open_listeners(uds=str(live))
        assert stat.S_ISSOCK(live.lstat().st_mode)
    regular = short_dir / "notes.txt"
    regular.write_text("keep me")
    with pytest.raises(ListenError, match="is a regular file, not a socket; it was left alone"):
        open_listeners(uds=str(regular))
    assert regular.read_text() == "keep me"
    link = short_dir / "link.sock"
    link.symlink_to(live)
    with pytest.raises(ListenError, match="is a symbolic link, not a socket"):
        open_listeners(uds=str(link))
    with pytest.raises(ListenError, match="the limit is 107"):
        open_listeners(uds="/tmp/" + "x" * 110)


def test_cli_uds_serves_replaces_stale_and_removes_on_sigterm(
    short_dir: Path, run_server: StartServer
) -> None:
    path = short_dir / "app.sock"
    make_stale_socket(path)
    server = run_server([*CLI, "--uds", str(path)])
    assert server.listening() == [f"unix:{path}"]
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    assert_hello(http_get(socket.AF_UNIX, str(path)))
    assert_hello(http_get(socket.AF_UNIX, str(path)))
    assert server.stop(signal.SIGTERM) == 0
    assert not path.exists()
    assert "removing stale socket" in server.log.read_text()


def test_cli_uds_refuses_live_socket_and_regular_file(short_dir: Path) -> None:
    live = short_dir / "live.sock"
    with make_unix_listener(live):
        result = run_cli("--uds", str(live))
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr) == (
        f"cyclehttp: error: another server is listening on {live}: stop it or choose another --uds path"
    )
    regular = short_dir / "data"
    regular.write_bytes(b"precious")
    result = run_cli("--uds", str(regular))
    assert result.returncode == 2, result.stderr
    assert "is a regular file, not a socket; it was left alone" in error_line(result.stderr)
    assert regular.read_bytes() == b"precious"


# --- --fd ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_activation")
def test_fd_adopts_tcp_and_unix_sockets(short_dir: Path) -> None:
    with socket.socket() as tcp, make_unix_listener(short_dir / "u.sock") as unix:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(8)
        for original in (tcp, unix):
            socks = open_listeners(fd=os.dup(original.fileno()))
            assert len(socks) == 1
            assert socks[0].family == original.family
            assert describe(socks[0]) == describe(original)
            assert not socks[0].getblocking()
            close_listeners(socks)
        # An inherited socket's file is not ours to remove.
        assert (short_dir / "u.sock").exists()


@pytest.mark.usefixtures("no_activation")
def test_fd_that_is_not_a_listening_stream_socket() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(ListenError, match=f"--fd {read_end} is a pipe, not a socket"):
            open_listeners(fd=read_end)
        os.fstat(read_end)  # left open
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket() as idle:
        with pytest.raises(ListenError, match="is a socket that is not listening: call listen"):
            open_listeners(fd=idle.fileno())
        assert idle.fileno() != -1
        idle.getsockname()  # the fd is still open and still the caller's
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp, pytest.raises(ListenError, match="SOCK_DGRAM socket, not a stream socket"):
        open_listeners(fd=udp.fileno())
    spare = os.open(os.devnull, os.O_RDONLY)
    os.close(spare)
    with pytest.raises(ListenError, match=f"--fd {spare}: the fd is not open"):
        open_listeners(fd=spare)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_cli_fd_serves_an_inherited_socket(kind: str, short_dir: Path, run_server: StartServer) -> None:
    if kind == "tcp":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address: str | tuple[Any, ...] = listener.getsockname()
    else:
        address = str(short_dir / "u.sock")
        listener = make_unix_listener(short_dir / "u.sock")
    with listener:
        fd = listener.fileno()
        server = run_server([*CLI, "--fd", str(fd)], pass_fds=[fd])
        assert server.listening() == [describe(listener)]
        assert_hello(http_get(listener.family, address))
        assert server.stop(signal.SIGTERM) == 0


def test_cli_fd_errors_exit_2() -> None:
    read_end, write_end = os.pipe()
    try:
        result = run_cli("--fd", str(read_end), pass_fds=[read_end])
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr) == (
        f"cyclehttp: error: --fd {read_end} is a pipe, not a socket: pass the fd of a listening socket"
    )
    with socket.socket() as idle:
        result = run_cli("--fd", str(idle.fileno()), pass_fds=[idle.fileno()])
    assert result.returncode == 2, result.stderr
    assert "is a socket that is not listening: call listen() on it" in error_line(result.stderr)
    result = run_cli("--fd", "1000")
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr).startswith("cyclehttp: error: --fd 1000: the fd is not open")
    result = run_cli("--fd", "3", "--uds", "/tmp/x.sock")
    assert result.returncode == 2, result.stderr
    assert "--uds and --fd both" in error_line(result.stderr)


# --- systemd socket activation ------------------------------------------------------


def test_cli_systemd_activation(run_server: StartServer) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        fd = listener.fileno()
        # --port would be taken, --host/--port are ignored under activation.
        server = run_server([sys.executable, "-c", SYSTEMD_WRAPPER, str(fd), "--port", "1"], pass_fds=[fd])
        assert server.listening() == [describe(listener)]
        assert_hello(http_get(socket.AF_INET, listener.getsockname()))
        assert server.stop(signal.SIGTERM) == 0
    assert "systemd socket activation: taking fd 3 (web)" in server.log.read_text()
    assert "LISTEN_ vars left: []" in server.stdout()


def test_cli_listen_pid_of_another_process_is_ignored(run_server: StartServer) -> None:
    # LISTEN_PID names this test process, not the server: the vars leaked, they are not for it.
    server = run_server([*CLI, "--port", "0"], LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
    (where,) = server.listening()
    port = int(where.rsplit(":", 1)[1])
    assert where == f"http://127.0.0.1:{port}"
    assert_hello(http_get(socket.AF_INET, ("127.0.0.1", port)))
    assert server.stop(signal.SIGINT) == 0
    assert "systemd" not in server.log.read_text()


def test_systemd_vars_are_unset_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1_000_000))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "web")
    socks = open_listeners(port=0)
    try:
        assert socks[0].family == socket.AF_INET
    finally:
        close_listeners(socks)
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(os.environ)
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "two")
    with pytest.raises(ListenError, match="LISTEN_FDS must be a number"):
        open_listeners(port=0)


# --- --backlog ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "expected a number >= 1, got 0"),
        ("-5", "expected a number >= 1"),
        ("x", "expected a whole number"),
    ],
)
def test_backlog_validation(value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["examples.hello:routes", "--backlog", value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_listen_flags_parse() -> None:
    args = build_parser().parse_args(["app:app"])
    assert (args.uds, args.fd, args.backlog) == (None, None, 2048)
    args = build_parser().parse_args(["app:app", "--uds", "/run/a.sock", "--backlog", "64"])
    assert (args.uds, args.backlog) == ("/run/a.sock", 64)
    assert build_parser().parse_args(["app:app", "--fd", "3"]).fd == 3


# --- Server on several sockets ---------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_activation")
async def test_server_serves_on_several_sockets(short_dir: Path) -> None:
    app = App([("GET", "/", Response.text("Hello, World!"))])
    socks = open_listeners(port=0) + open_listeners(uds=str(short_dir / "s.sock"))
    server = Server(app)
    try:
        await server.start(socks=socks)
        assert len(server.sockets) == 2
        assert server.port == socks[0].getsockname()[1]
        opens = [
            asyncio.open_connection("127.0.0.1", server.port),
            asyncio.open_unix_connection(str(short_dir / "s.sock")),
        ]
        for opening in opens:
            reader, writer = await asyncio.wait_for(opening, TIMEOUT)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert_hello(await asyncio.wait_for(reader.read(), TIMEOUT))
            writer.close()
            await writer.wait_closed()
    finally:
        await asyncio.wait_for(server.shutdown(), TIMEOUT)
        close_listeners(socks)
    assert not server.sockets
    assert not (short_dir / "s.sock").exists()


@pytest.mark.asyncio
async def test_server_start_rejects_sock_and_socks() -> None:
    server = Server(App([("GET", "/", "x")]))
    with socket.socket() as sock, pytest.raises(ValueError, match="not both"):
        await server.start(sock=sock, socks=[sock])
    with pytest.raises(ValueError, match="empty"):
        await server.start(socks=[])

"""Graceful shutdown over real sockets: in-process (Server.shutdown) and the CLI process (signals)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection, RawResponse

REPO_ROOT = Path(__file__).resolve().parent.parent
GET_ROOT = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
GET_SLOW = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
GET_STUCK = b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n"

StartServer = Callable[..., Awaitable[TestServer]]


class Handlers:
    """Async handlers that tell the test when they have started (and whether they were cancelled)."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self._changed = asyncio.Event()

    async def slow(self, request: Request) -> str:
        self.started += 1
        self._changed.set()
        await asyncio.sleep(0.3)
        return "slow done"

    async def stuck(self, request: Request) -> str:
        self.started += 1
        self._changed.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "never"

    async def wait_started(self, n: int, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while self.started < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def app(self) -> App:
        return App(
            [
                ("GET", "/", Response.text("Hello, World!")),
                ("GET", "/slow", self.slow),
                ("GET", "/stuck", self.stuck),
            ]
        )


async def wait_draining(server: TestServer) -> None:
    async def wait() -> None:
        while not server.server.state.draining:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), 5)


async def assert_refused(server: TestServer) -> None:
    with pytest.raises(OSError):
        # Connecting must fail: the listening socket is closed when shutdown begins.
        connection = await RawConnection.open(server.host, server.port, timeout=2)
        await connection.close()


async def final_response(connection: RawConnection, body: bytes) -> RawResponse:
    """The last response on a connection: complete, ``Connection: close``, then EOF and nothing more."""
    response = await connection.read_response()
    assert response.status == 200
    assert response.body == body
    assert response.header("content-length") == str(len(body))
    assert response.header("connection") == "close"
    assert await connection.read_until_closed(timeout=5) == b""
    return response


async def test_graceful_shutdown_under_concurrent_load(cyclehttp_server: StartServer) -> None:
    handlers = Handlers()
    server = await cyclehttp_server(handlers.app())
    slow: list[RawConnection] = []  # a slow request in flight
    idle: list[RawConnection] = []  # keep-alive, idle after a response
    pipelined: list[RawConnection] = []  # one response sent, a slow request in flight behind it
    fresh: list[RawConnection] = []  # connected, nothing sent
    opened: list[RawConnection] = []

    async def connect(group: list[RawConnection]) -> RawConnection:
        connection = await RawConnection.open(server.host, server.port, timeout=5)
        opened.append(connection)
        group.append(connection)
        return connection

    try:
        for _ in range(6):
            connection = await connect(idle)
            await connection.send(GET_ROOT)
            response = await connection.read_response()
            assert response.status == 200
            assert response.header("connection") is None  # kept alive
        for _ in range(8):
            await (await connect(slow)).send(GET_SLOW)
        for _ in range(4):
            await (await connect(pipelined)).send(GET_ROOT + GET_SLOW)
        for _ in range(2):
            await connect(fresh)
        await handlers.wait_started(12)
        for _ in range(500):  # the server accepts the fresh ones in its own time
            if len(server.server.state.connections) == 20:
                break
            await asyncio.sleep(0.01)
        assert len(server.server.state.connections) == 20

        shutdown = asyncio.create_task(server.close(timeout=5))
        await wait_draining(server)
        await assert_refused(server)

        async def check_slow(connection: RawConnection) -> None:
            await final_response(connection, b"slow done")

        async def check_pipelined(connection: RawConnection) -> None:
            first = await connection.read_response()
            assert first.body == b"Hello, World!"
            assert first.header("connection") is None  # answered before the shutdown
            await final_response(connection, b"slow done")

        async def check_closed_silently(connection: RawConnection) -> None:
            assert await connection.read_until_closed(timeout=5) == b""

        await asyncio.wait_for(
            asyncio.gather(
                *map(check_slow, slow),
                *map(check_pipelined, pipelined),
                *map(check_closed_silently, idle + fresh),
            ),
            10,
        )
        await asyncio.wait_for(shutdown, 10)
        assert server.server.state.connections == set()
        assert handlers.started == 12
        assert server.stats.requests == 6 + 8 + 4 * 2
    finally:
        await asyncio.gather(*(c.close() for c in opened))


async def test_a_request_completed_during_shutdown_is_answered_with_close(
    cyclehttp_server: StartServer,
) -> None:
    handlers = Handlers()
    server = await cyclehttp_server(handlers.app())
    async with (
        await RawConnection.open(server.host, server.port) as half,
        await RawConnection.open(server.host, server.port) as busy,
    ):
        await half.send(b"GET / HTTP/1.1\r\nHost: t\r\n")  # mid-head: not idle, so kept open
        await busy.send(GET_SLOW)
        await handlers.wait_started(1)

        shutdown = asyncio.create_task(server.close(timeout=5))
        await wait_draining(server)
        await half.send(b"X-Late: yes\r\n\r\n")
        await busy.send(GET_ROOT)  # pipelined behind the slow request, after shutdown began

        await final_response(half, b"Hello, World!")
        # The slow response says "Connection: close"; the request behind it is not processed
        # (RFC 9112 section 9.6), and the client knows to retry it elsewhere.
        await final_response(busy, b"slow done")
        await asyncio.wait_for(shutdown, 10)
    assert server.server.state.connections == set()


async def test_a_request_on_an_idle_connection_after_shutdown_began_gets_no_answer(
    cyclehttp_server: StartServer,
) -> None:
    handlers = Handlers()
    server = await cyclehttp_server(handlers.app())
    async with (
        await RawConnection.open(server.host, server.port) as busy,
        await RawConnection.open(server.host, server.port) as keeper,
    ):
        await busy.send(GET_SLOW)
        await handlers.wait_started(1)
        shutdown = asyncio.create_task(server.close(timeout=5))
        await wait_draining(server)
        # Sent after shutdown began on a connection that is otherwise idle: it was closed
        # at once, so the request gets no answer, only the close.
        await keeper.send(GET_ROOT)
        assert await keeper.read_until_closed(timeout=5) == b""
        await final_response(busy, b"slow done")
        await asyncio.wait_for(shutdown, 10)


@pytest.mark.parametrize("how", ["config", "argument"])
async def test_graceful_timeout_expiry_closes_the_connection(cyclehttp_server: StartServer, how: str) -> None:
    handlers = Handlers()
    if how == "config":
        server = await cyclehttp_server(handlers.app(), graceful_timeout=0.5)
        stop = server.server.shutdown()  # the timeout comes from Config.graceful_timeout
    else:
        server = await cyclehttp_server(handlers.app())
        stop = server.server.shutdown(0.5)
    async with await RawConnection.open(server.host, server.port) as connection:
        await connection.send(GET_STUCK)
        await handlers.wait_started(1)
        await asyncio.wait_for(stop, 5)  # bounded: not a measure of speed
        assert await connection.read_until_closed(timeout=5) == b""
    assert server.server.state.connections == set()
    for _ in range(100):  # the aborted handler task gets its cancellation
        if handlers.cancelled:
            break
        await asyncio.sleep(0.01)
    assert handlers.cancelled == 1
    await assert_refused(server)


# --- the CLI process -------------------------------------------------------------

SLOW_APP = """\
import asyncio
import sys

from cyclehttp import Response


async def slow(request):
    print("handler started", file=sys.stderr, flush=True)
    await asyncio.sleep({seconds})
    return "slow done"


routes = [("GET", "/", Response.text("ready")), ("GET", "/slow", slow)]
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _start_cli(tmp_path: Path, seconds: float, *options: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    name = f"cyclehttp_shutdown_test_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(SLOW_APP.format(seconds=seconds))
    port = _free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cyclehttp",
                f"{name}:routes",
                "--app-dir",
                str(tmp_path),
                "--port",
                str(port),
                *options,
            ],
            cwd=REPO_ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    return process, port, log_path


async def _wait_for(condition: Callable[[], bool], what: str, log_path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; server log:\n{log_path.read_text()}")
        await asyncio.sleep(0.02)


async def _wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited early: {log_path.read_text()}"
        with contextlib.suppress(OSError, TimeoutError):
            async with await RawConnection.open("127.0.0.1", port, timeout=2) as connection:
                await connection.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                if (await connection.read_response()).body == b"ready":
                    return
        await asyncio.sleep(0.05)
    raise AssertionError(f"server never answered: {log_path.read_text()}")


def _exit_status(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the server did not exit within {timeout} s") from None


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def test_cli_sigterm_finishes_the_request_in_flight_then_exits_0(tmp_path: Path) -> None:
    process, port, log_path = _start_cli(tmp_path, 1.0)

    async def scenario() -> None:
        await _wait_ready(process, port, log_path)
        async with await RawConnection.open("127.0.0.1", port, timeout=10) as connection:
            await connection.send(GET_SLOW)
            await _wait_for(lambda: "handler started" in log_path.read_text(), "the handler", log_path)
            process.send_signal(signal.SIGTERM)
            response = await connection.read_response()
            assert response.status == 200
            assert response.body == b"slow done"
            assert response.header("connection") == "close"
            assert await connection.read_until_closed() == b""

    try:
        asyncio.run(scenario())
        assert _exit_status(process, 10) == 0
    finally:
        _kill(process)
    output = log_path.read_text()
    assert "SIGTERM received, shutting down" in output
    assert "Traceback" not in output


def test_cli_second_signal_closes_everything_at_once(tmp_path: Path) -> None:
    process, port, log_path = _start_cli(tmp_path, 30.0, "--graceful-timeout", "60")

    async def scenario() -> None:
        await _wait_ready(process, port, log_path)
        async with await RawConnection.open("127.0.0.1", port, timeout=10) as connection:
            await connection.send(GET_SLOW)
            await _wait_for(lambda: "handler started" in log_path.read_text(), "the handler", log_path)
            process.send_signal(signal.SIGTERM)
            await _wait_for(lambda: "SIGTERM received" in log_path.read_text(), "the first signal", log_path)
            assert process.poll() is None  # still draining: the handler has 29 s to go
            process.send_signal(signal.SIGINT)
            assert await connection.read_until_closed(timeout=10) == b""

    try:
        asyncio.run(scenario())
        assert _exit_status(process, 10) == 0
    finally:
        _kill(process)
    output = log_path.read_text()
    assert "second signal: closing every connection now" in output


async def test_shutdown_answers_an_async_request_with_a_bad_request_queued_behind_it(
    cyclehttp_server: StartServer,
) -> None:
    handlers = Handlers()
    server = await cyclehttp_server(handlers.app())
    async with await RawConnection.open(server.host, server.port) as connection:
        await connection.send(GET_SLOW + b"garbage\r\n\r\n")  # the 400 waits for the slow response
        await handlers.wait_started(1)
        shutdown = asyncio.create_task(server.close(timeout=5))
        await wait_draining(server)
        await final_response(connection, b"slow done")
        await asyncio.wait_for(shutdown, 10)

"""Startup and shutdown hooks, and ``app.state`` (cyclehttp.lifecycle).

The first half runs the hooks in-process with the test-server fixture and
``Server`` itself; the second runs the real CLI (single process and
``--workers 2``) and gunicorn in subprocesses, whose hooks append
"<event> <pid>" lines to a marker file. Every wait has a deadline and every
process is killed in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cyclehttp import App, Request, Server, StartupError
from cyclehttp.testing import TestServer

StartServer = Callable[..., Awaitable[TestServer]]
TIMEOUT = 15.0


async def get(server: TestServer, path: str = "/") -> tuple[int, bytes]:
    async with await server.raw() as connection:
        await connection.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        response = await connection.read_response()
    return response.status, response.body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --- in-process -----------------------------------------------------------------------------------


async def test_hooks_run_around_the_server_in_order(cyclehttp_server: StartServer) -> None:
    events: list[str] = []
    app = App()

    @app.on_startup
    def open_pool(app: App) -> None:
        events.append("open pool")
        app.state.pool = "pool"

    @app.on_shutdown
    async def close_pool(app: App) -> None:
        await asyncio.sleep(0)
        events.append("close pool")

    @app.on_startup
    async def warm_cache(app: App) -> None:
        await asyncio.sleep(0.05)  # a slow hook: the first request must still come after it
        events.append("warm cache")

    @app.on_shutdown
    def drop_cache(app: App) -> None:
        events.append("drop cache")

    @app.get("/")
    def index(request: Request) -> str:
        events.append("request")
        return str(request.app.state.pool)

    server = await cyclehttp_server(app)
    assert events == ["open pool", "warm cache"]
    assert await get(server) == (200, b"pool")
    await server.server.shutdown()
    assert events == ["open pool", "warm cache", "request", "drop cache", "close pool"]
    await server.server.shutdown()  # again (the fixture's teardown does too): the hooks ran once
    assert events.count("close pool") == 1


async def test_add_startup_and_add_shutdown_and_callable_objects(cyclehttp_server: StartServer) -> None:
    events: list[str] = []

    class Hook:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, app: App) -> None:
            events.append(self.name)

    def record(name: str, app: App) -> None:
        events.append(name)

    app = App()
    app.add_startup(Hook("up"))
    app.add_startup(functools.partial(record, "partial up"))
    app.add_shutdown(lambda app: events.append("down"))
    server = await cyclehttp_server(app)
    await server.close()
    assert events == ["up", "partial up", "down"]


@pytest.mark.parametrize(
    ("hook", "said"),
    [
        ("not a function", "not callable"),
        (lambda app, extra: None, "takes (app, extra)"),
        (lambda *, key: None, "takes (*, key)"),
        (functools.partial(lambda app, *, key: None), "takes (app, *, key)"),
    ],
)
@pytest.mark.parametrize("declare", ["on_startup", "on_shutdown", "add_startup", "add_shutdown"])
def test_a_hook_of_the_wrong_shape_is_refused_when_declared(hook: Any, said: str, declare: str) -> None:
    app = App()
    phase = declare.partition("_")[2]
    both_shapes = rf"a {phase} hook takes the app or nothing: def hook\(app\) / async def hook\(app\), "
    with pytest.raises(TypeError, match=both_shapes + r"or def hook\(\) / async def hook\(\)") as caught:
        getattr(app, declare)(hook)
    assert said in str(caught.value)
    assert app.lifespan()._hooks == []


async def test_hooks_that_take_nothing_run_around_the_server(cyclehttp_server: StartServer) -> None:
    # Starlette's and FastAPI's shape, sync and async, among hooks that take the app.
    events: list[str] = []
    app = App()

    @app.on_startup
    def open_pool() -> None:
        events.append("open pool")

    @app.on_startup
    async def warm_cache(app: App) -> None:
        await asyncio.sleep(0)
        events.append(f"warm cache {type(app).__name__}")

    @app.on_startup
    async def connect() -> None:
        await asyncio.sleep(0.05)  # slow: the first request must still come after it
        events.append("connect")
        app.state.greeting = "ready"

    @app.on_shutdown
    async def disconnect() -> None:
        await asyncio.sleep(0)
        events.append("disconnect")

    @app.on_shutdown
    def drop_cache(app: App) -> None:
        events.append(f"drop cache {type(app).__name__}")

    @app.on_shutdown
    def close_pool() -> None:
        events.append("close pool")

    @app.get("/")
    def index(request: Request) -> str:
        events.append("request")
        return str(request.app.state.greeting)

    server = await cyclehttp_server(app)
    assert events == ["open pool", "warm cache App", "connect"]
    assert await get(server) == (200, b"ready")
    await server.close()
    assert events[3:] == ["request", "close pool", "drop cache App", "disconnect"]


async def test_add_startup_and_add_shutdown_take_callables_of_either_shape(
    cyclehttp_server: StartServer,
) -> None:
    calls: list[tuple[str, tuple[object, ...]]] = []

    class Pool:
        def open(self) -> None:  # a bound method: takes nothing
            calls.append(("open", ()))

        async def close(self, app: App) -> None:  # a bound method taking the app
            calls.append(("close", (app,)))

    class NoArguments:
        async def __call__(self) -> None:
            calls.append(("object", ()))

    class WithoutSignature:
        """A callable whose signature cannot be read, as some builtins' (max, getattr)."""

        @property
        def __signature__(self) -> inspect.Signature:
            raise ValueError("no signature found")

        def __call__(self, *args: object) -> None:
            calls.append(("no signature", args))

    def optional(app: object = None) -> None:  # fits both shapes: one argument wins
        calls.append(("optional", (app,)))

    def variadic(*args: object) -> None:
        calls.append(("variadic", args))

    app = App()
    pool = Pool()
    app.add_startup(pool.open)
    app.add_startup(NoArguments())
    app.add_startup(WithoutSignature())
    app.add_startup(optional)
    app.add_startup(variadic)
    app.add_startup(functools.partial(lambda name: calls.append((name, ())), "partial"))
    app.add_shutdown(pool.close)
    app.add_shutdown(lambda: calls.append(("lambda", ())))
    server = await cyclehttp_server(app)
    await server.close()
    assert calls == [
        ("open", ()),
        ("object", ()),
        ("no signature", (app,)),  # as before: a hook is called with the app unless it takes nothing
        ("optional", (app,)),
        ("variadic", (app,)),
        ("partial", ()),
        ("lambda", ()),
        ("close", (app,)),
    ]


@pytest.mark.asyncio
async def test_the_shape_is_read_from_the_signature_not_tried_by_calling() -> None:
    # A TypeError raised inside a hook is its failure: the hook is not called again another way.
    calls: list[tuple[object, ...]] = []
    app = App()

    @app.on_startup
    def broken(*args: object) -> None:
        calls.append(args)
        raise TypeError("a bug inside the hook")

    with pytest.raises(StartupError, match="TypeError: a bug inside the hook") as caught:
        await Server(app).start("127.0.0.1", 0)
    assert isinstance(caught.value.__cause__, TypeError)
    assert calls == [(app,)]

    calls.clear()
    nothing = App()

    @nothing.on_startup
    async def broken_too() -> None:
        calls.append(())
        raise TypeError("takes 0 positional arguments but 1 was given")  # looks like a wrong call

    with pytest.raises(StartupError, match="broken_too failed"):
        await Server(nothing).start("127.0.0.1", 0)
    assert calls == [()]


@pytest.mark.asyncio
async def test_a_failing_startup_hook_that_takes_nothing_undoes_what_ran() -> None:
    events: list[str] = []
    app = App()
    app.add_startup(lambda: events.append("open pool"))
    app.add_shutdown(lambda: events.append("close pool"))

    @app.on_startup
    async def connect_db() -> None:
        raise ConnectionRefusedError("db:5432 refused")

    app.add_shutdown(lambda: events.append("close db"))
    port = free_port()
    with pytest.raises(StartupError, match="connect_db failed: ConnectionRefusedError"):
        await Server(app).start("127.0.0.1", port)
    assert events == ["open pool", "close pool"]
    assert port_is_free(port)


def test_hooks_with_optional_extras_are_accepted() -> None:
    app = App()

    def with_default(app: App, retries: int = 3) -> None: ...

    def variadic(*args: object) -> None: ...

    assert app.on_startup(with_default) is with_default  # the decorator returns the function
    app.add_shutdown(variadic)


@pytest.mark.asyncio
async def test_a_failing_startup_hook_stops_the_start_and_undoes_what_ran(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []
    app = App()

    @app.get("/")
    def index(request: Request) -> str:
        return "never"

    @app.on_shutdown
    def flush(app: App) -> None:  # declared before the failing hook: runs
        events.append("flush")

    @app.on_startup
    def open_pool(app: App) -> None:
        events.append("open pool")

    @app.on_shutdown
    def close_pool(app: App) -> None:  # declared before the failing hook: runs, before flush
        events.append("close pool")

    @app.on_startup
    async def connect_db(app: App) -> None:
        raise ConnectionRefusedError("db:5432 refused")

    @app.on_shutdown
    def close_db(app: App) -> None:  # its startup hook failed: not run
        events.append("close db")

    @app.on_startup
    def never(app: App) -> None:
        events.append("never")

    port = free_port()
    server = Server(app)
    with caplog.at_level(logging.ERROR, "cyclehttp.error"), pytest.raises(StartupError) as caught:
        await server.start("127.0.0.1", port)
    message = str(caught.value)
    assert "startup hook" in message and "connect_db failed" in message
    assert "ConnectionRefusedError: db:5432 refused" in message
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert events == ["open pool", "close pool", "flush"]
    assert port_is_free(port), "a failed start left the port listening"
    assert server.sockets == ()
    logged = [r for r in caplog.records if r.name == "cyclehttp.error"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    await server.shutdown()  # harmless, and runs no hook
    assert events == ["open pool", "close pool", "flush"]


@pytest.mark.asyncio
async def test_a_bind_failure_after_the_hooks_runs_the_shutdown_hooks() -> None:
    events: list[str] = []
    app = App()
    app.add_startup(lambda app: events.append("up"))
    app.add_shutdown(lambda app: events.append("down"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            await Server(app).start("127.0.0.1", taken.getsockname()[1])
    assert events == ["up", "down"]


async def test_a_failing_shutdown_hook_is_logged_and_the_others_run(
    cyclehttp_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    app = App()
    app.add_shutdown(lambda app: events.append("first declared"))

    @app.on_shutdown
    async def explode(app: App) -> None:
        raise RuntimeError("boom in shutdown")

    app.add_shutdown(lambda app: events.append("last declared"))
    server = await cyclehttp_server(app)
    with caplog.at_level(logging.ERROR, "cyclehttp.error"):
        await server.close()  # does not raise
    assert events == ["last declared", "first declared"]
    failed = [r for r in caplog.records if "explode failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].name == "cyclehttp.error"
    assert failed[0].exc_info is not None and "boom in shutdown" in str(failed[0].exc_info[1])


def test_state_is_an_attribute_namespace_with_a_clear_error() -> None:
    app = App()
    app.state.cache = {"a": 1}
    assert app.state.cache == {"a": 1}
    with pytest.raises(AttributeError, match=r"app.state has no attribute 'db'.*set so far: cache"):
        _ = app.state.db
    assert getattr(app.state, "db", None) is None
    assert App().state is not App().state


@pytest.mark.parametrize("proxy_headers", [False, True])
async def test_request_app_reaches_the_state(cyclehttp_server: StartServer, proxy_headers: bool) -> None:
    app = App()
    app.add_startup(lambda app: setattr(app.state, "greeting", "hello from state"))

    @app.get("/")
    async def index(request: Request) -> str:
        assert request.app is app
        return str(request.app.state.greeting)

    server = await cyclehttp_server(app, proxy_headers=proxy_headers)
    assert await get(server) == (200, b"hello from state")


def test_a_request_made_by_hand_has_no_app() -> None:
    request = Request(b"GET", b"/", b"", [], b"", None, "1.1", None)
    with pytest.raises(RuntimeError, match="not made by a cyclehttp Server"):
        _ = request.app


# --- the real CLI and gunicorn, in subprocesses ------------------------------------------------------

LIFECYCLE_APP = """
import os
import time
from pathlib import Path

from cyclehttp import App

MARKS = Path(__file__).with_name("marks.txt")
app = App()


def mark(event):
    with MARKS.open("a") as marks:
        marks.write(f"{event} {os.getpid()}\\n")


@app.on_startup
def open_pool(app):
    mark("startup-1")
    app.state.pool = "pool"


@app.on_startup
async def connect_db(app):
    if os.environ.get("LAPP_FAIL"):
        mark("failing")
        raise ConnectionRefusedError("db:5432 refused")
    time.sleep(0.3)  # slow: a request sent meanwhile waits for the start
    mark("startup-2")


@app.on_shutdown
async def close_pool(app):
    mark("shutdown")


@app.get("/")
def index(request):
    mark("request")
    return request.app.state.pool + " " + str(os.getpid())
"""


def marks(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "marks.txt"
    if not path.exists():
        return []
    return [(event, int(pid)) for event, pid in (line.split() for line in path.read_text().splitlines())]


def http_get(port: int, deadline: float = TIMEOUT) -> bytes:
    """GET / (``Connection: close``), retrying the connect until the deadline; the body."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=deadline)
            break
        except ConnectionRefusedError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return body


def wait_until(condition: Callable[[], object], what: str) -> None:
    give_up = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def running(
    tmp_path: Path, command: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    (tmp_path / "lapp.py").write_text(LIFECYCLE_APP)
    with (tmp_path / "out.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers left behind, if any


def cli(tmp_path: Path, port: int, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cyclehttp",
        "lapp:app",
        "--port",
        str(port),
        "--app-dir",
        str(tmp_path),
        *options,
    ]


def output(tmp_path: Path) -> str:
    return (tmp_path / "out.log").read_text(errors="replace")


def test_cli_runs_the_hooks_around_serving(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, cli(tmp_path, port)) as process:
        body = http_get(port)  # sent while the slow startup hook may still run
        assert body.startswith(b"pool ")
        assert [event for event, _ in marks(tmp_path)] == ["startup-1", "startup-2", "request"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0, output(tmp_path)
    events = marks(tmp_path)
    assert [event for event, _ in events] == ["startup-1", "startup-2", "request", "shutdown"]
    assert {pid for _, pid in events} == {process.pid}


def run_failing(tmp_path: Path, *options: str) -> tuple[int, str]:
    with running(tmp_path, cli(tmp_path, free_port(), *options), env={"LAPP_FAIL": "1"}) as process:
        status = process.wait(timeout=TIMEOUT)
    return status, output(tmp_path)


def test_cli_exits_non_zero_when_a_startup_hook_fails(tmp_path: Path) -> None:
    status, text = run_failing(tmp_path)
    assert status != 0
    assert "startup hook lapp.connect_db failed: ConnectionRefusedError: db:5432 refused" in text
    assert [event for event, _ in marks(tmp_path)] == ["startup-1", "failing"]


def test_cli_startup_failure_is_one_clear_line_and_one_traceback(tmp_path: Path) -> None:
    status, text = run_failing(tmp_path)
    assert status == 1
    assert "cyclehttp: error: " in text
    assert text.count("Traceback (most recent call last)") == 1, text


def test_workers_each_run_the_hooks(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, cli(tmp_path, port, "--workers", "2")) as process:
        wait_until(
            lambda: len([e for e, _ in marks(tmp_path) if e == "startup-2"]) == 2, "both workers started"
        )
        assert http_get(port).startswith(b"pool ")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0, output(tmp_path)
    events = marks(tmp_path)
    started = {pid for event, pid in events if event == "startup-2"}
    assert len(started) == 2 and process.pid not in started
    assert {pid for event, pid in events if event == "shutdown"} == started
    for pid in started:  # in each worker: startup, startup, (requests), shutdown
        mine = [event for event, p in events if p == pid]
        assert (
            mine[:2] == ["startup-1", "startup-2"] and mine[-1] == "shutdown" and mine.count("shutdown") == 1
        )


def test_workers_stop_when_a_startup_hook_fails(tmp_path: Path) -> None:
    began = time.monotonic()
    status, text = run_failing(tmp_path, "--workers", "2")
    assert status == 1, text
    assert time.monotonic() - began < TIMEOUT
    assert "could not start serving" in text
    assert "startup hook lapp.connect_db failed" in text
    assert len([event for event, _ in marks(tmp_path) if event == "failing"]) <= 2  # no restart loop


def gunicorn(port: int) -> list[str]:
    gunicorn_config = pytest.importorskip("gunicorn.config")
    quiet = any(setting.name == "control_socket_disable" for setting in gunicorn_config.KNOWN_SETTINGS)
    return [
        sys.executable, "-m", "gunicorn", "-k", "cyclehttp.serving.gunicorn.CycleWorker",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", *(["--no-control-socket"] * quiet), "lapp:app",
    ]  # fmt: skip


def test_gunicorn_worker_runs_the_hooks(tmp_path: Path) -> None:
    port = free_port()
    command = gunicorn(port)
    with running(tmp_path, command) as process:
        body = http_get(port)
        worker = int(body.split()[1])
        assert worker != process.pid
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0, output(tmp_path)
    assert marks(tmp_path) == [
        ("startup-1", worker),
        ("startup-2", worker),
        ("request", worker),
        ("shutdown", worker),
    ]


def test_gunicorn_stops_when_a_startup_hook_fails(tmp_path: Path) -> None:
    with running(tmp_path, gunicorn(free_port()), env={"LAPP_FAIL": "1"}) as process:
        status = process.wait(timeout=TIMEOUT)
    assert status != 0
    assert "cyclehttp: error: startup hook lapp.connect_db failed" in output(tmp_path)
    assert len([event for event, _ in marks(tmp_path) if event == "failing"]) == 1

"""The pytest plugin: test an app over real sockets, on the test's own loop.

Installed with the package (``pytest11`` entry point). Fixtures:

``cyclehttp_server``
    A factory: ``server = await cyclehttp_server(app, **options)`` starts
    ``app`` on 127.0.0.1, port 0, on the running loop, and returns a
    ``TestServer`` (``host``, ``port``, ``url``, ``stats``, ``raw()``).
    Every server is shut down at teardown, also when the test fails.
``cyclehttp_app``
    The app ``cyclehttp_client`` serves; override it in a test module or
    conftest.py.
``cyclehttp_client``
    An ``httpx.AsyncClient`` bound to a server running ``cyclehttp_app``.
``cyclehttp_raw``
    A factory of ``RawConnection`` (exact bytes in, raw responses out) to
    the server behind ``cyclehttp_client``.

Async tests that use these fixtures are marked for pytest-asyncio
automatically, so they need no decorator. Test servers never install
signal handlers.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from .app import App
from .config import Config
from .metrics import StatsSnapshot
from .rawhttp import RawConnection
from .server import Server

if TYPE_CHECKING:
    import httpx

__all__ = ["TestServer", "start_test_server"]

_FIXTURES = frozenset({"cyclehttp_server", "cyclehttp_client", "cyclehttp_raw"})
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class TestServer:
    """A server started for a test: where it listens and what it has seen."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, app: App, server: Server) -> None:
        self.app = app
        self.server = server
        self.host = "127.0.0.1"
        self.port = server.port
        self.url = f"http://{self.host}:{self.port}"
        self._raw: list[RawConnection] = []

    @property
    def stats(self) -> StatsSnapshot:
        """This server's figures (connections, requests, timings), live."""
        return self.server.stats.snapshot()

    async def raw(self, timeout: float = 5.0) -> RawConnection:
        """A new raw connection to this server (``async with`` it; ``close()`` closes it too)."""
        connection = await RawConnection.open(self.host, self.port, timeout=timeout)
        self._raw.append(connection)
        return connection

    async def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Drain requests in flight, close every connection, and the raw ones opened here."""
        await self.server.shutdown(timeout)
        for connection in self._raw:
            await connection.close()


def _as_app(app: object) -> App:
    if isinstance(app, App):
        return app
    if isinstance(app, (list, tuple)):
        return App(app)
    raise TypeError(f"cyclehttp_server needs an App or a list of routes, got {type(app).__name__}")


async def start_test_server(app: App | list[Any], *, port: int = 0, **options: Any) -> TestServer:
    """Start ``app`` on 127.0.0.1 (port 0: the OS picks) on the running loop."""
    built = _as_app(app)
    server = Server(built, Config.from_options(options))
    try:
        await asyncio.wait_for(server.start("127.0.0.1", port), START_TIMEOUT)
    except OSError as exc:
        raise RuntimeError(f"cyclehttp test server could not listen on 127.0.0.1:{port}: {exc}") from exc
    return TestServer(built, server)


@pytest_asyncio.fixture
async def cyclehttp_server() -> AsyncIterator[Callable[..., Awaitable[TestServer]]]:
    """Factory fixture: ``await cyclehttp_server(app, **options)`` -> ``TestServer``."""
    started: list[TestServer] = []

    async def start(app: App | list[Any], *, port: int = 0, **options: Any) -> TestServer:
        server = await start_test_server(app, port=port, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            await server.close()
        leaked = [s for s in started if s.server.state.connections]
        if leaked:
            pytest.fail(f"cyclehttp test server left connections open at teardown: {leaked}")


@pytest.fixture
def cyclehttp_app() -> App:
    """The app ``cyclehttp_client`` serves: override this fixture to name yours."""
    raise pytest.UsageError(
        "cyclehttp_client and cyclehttp_raw need your app: define a fixture named cyclehttp_app "
        "that returns it, e.g.\n\n@pytest.fixture\ndef cyclehttp_app():\n    return app\n"
    )


@pytest_asyncio.fixture
async def cyclehttp_test_server(
    cyclehttp_server: Callable[..., Awaitable[TestServer]], cyclehttp_app: App
) -> TestServer:
    """The running server of ``cyclehttp_app`` shared by the client and raw fixtures."""
    return await cyclehttp_server(cyclehttp_app)


@pytest_asyncio.fixture
async def cyclehttp_client(cyclehttp_test_server: TestServer) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` whose base URL is a server running ``cyclehttp_app``."""
    import httpx

    async with httpx.AsyncClient(base_url=cyclehttp_test_server.url, timeout=10.0) as client:
        yield client


@pytest_asyncio.fixture
async def cyclehttp_raw(
    cyclehttp_test_server: TestServer,
) -> AsyncIterator[Callable[[], Awaitable[RawConnection]]]:
    """Factory of raw connections to the server behind ``cyclehttp_client``; all closed at teardown."""
    opened: list[RawConnection] = []

    async def connect() -> RawConnection:
        connection = await cyclehttp_test_server.raw()
        opened.append(connection)
        return connection

    try:
        yield connect
    finally:
        for connection in opened:
            await connection.close()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Default pytest-asyncio's fixture loop scope to "function" when the user set none.

    The cyclehttp fixtures are function-scoped; without a setting, pytest-asyncio
    warns on every run, which fails a user's warning-clean (``-W error``) suite.
    """
    name = "asyncio_default_fixture_loop_scope"
    try:
        if not config.getini(name):
            config._inicache[name] = "function"
    except (ValueError, AttributeError):  # pytest-asyncio absent, or pytest internals changed
        pass


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark ``async def`` tests that ask for a cyclehttp fixture for pytest-asyncio.

    Runs before pytest-asyncio collects the function, so such tests need no
    ``@pytest.mark.asyncio`` even in pytest-asyncio's strict mode.
    """
    if not (inspect.iscoroutinefunction(obj) and name.startswith("test")):
        return
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    marks = getattr(obj, "pytestmark", [])
    if _FIXTURES.intersection(parameters) and not any(m.name == "asyncio" for m in marks):
        pytest.mark.asyncio(obj)

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

The entry point loads this module in every pytest run of an environment
where cyclehttp is installed, also without the ``test`` extra. So it imports
nothing optional: without pytest-asyncio, ``cyclehttp_server``,
``cyclehttp_client`` and ``cyclehttp_raw`` are stand-ins that fail the test
asking for them with one line (``pip install 'cyclehttp[test]'``); without
httpx, only ``cyclehttp_client`` is. Every other test of that run is untouched.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import pytest

try:
    import pytest_asyncio
except ImportError:  # the plugin must still load: its fixtures say what to install
    HAS_PYTEST_ASYNCIO = False
else:
    HAS_PYTEST_ASYNCIO = True

from cyclehttp.app.application import App
from cyclehttp.clock.stats import StatsSnapshot
from cyclehttp.config import Config
from cyclehttp.serving.server import Server
from cyclehttp.testing.rawclient import RawConnection

if TYPE_CHECKING:
    import httpx

__all__ = ["TestServer", "start_test_server"]

_FIXTURES = frozenset({"cyclehttp_server", "cyclehttp_client", "cyclehttp_raw"})
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
INSTALL_TEST_EXTRA = "pip install 'cyclehttp[test]'"
# Looked up, not imported: importing httpx costs every pytest run of the environment ~0.1 s.
HAS_HTTPX = importlib.util.find_spec("httpx") is not None

F = TypeVar("F", bound=Callable[..., Any])


def _async_fixture(*needs: str) -> Callable[[F], F]:
    """``pytest_asyncio.fixture`` when ``needs`` are installed, else a stand-in of the same name.

    The stand-in takes no fixtures (so asking for it does not first fail on
    ``cyclehttp_app`` or start a server) and fails the test at setup with one
    line naming what is missing and the install command.
    """
    installed = {"pytest-asyncio": HAS_PYTEST_ASYNCIO, "httpx": HAS_HTTPX}
    missing = [name for name in needs if not installed[name]]

    def decorate(function: F) -> F:
        if not missing:
            return cast(F, pytest_asyncio.fixture(function))
        return cast(F, _unavailable_fixture(function.__name__, missing))

    return decorate


def _unavailable_fixture(name: str, missing: list[str]) -> object:
    """A plain fixture named ``name`` that fails the test asking for it: ``missing`` is not installed."""
    message = (
        f"the {name} fixture needs {' and '.join(missing)}, which "
        f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_TEST_EXTRA}"
    )

    def unavailable() -> NoReturn:
        pytest.fail(message, pytrace=False)

    unavailable.__doc__ = f"Stands in for {name}: {message}."
    return pytest.fixture(name=name)(unavailable)


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


@_async_fixture("pytest-asyncio")
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


@_async_fixture("pytest-asyncio")
async def cyclehttp_test_server(
    cyclehttp_server: Callable[..., Awaitable[TestServer]], cyclehttp_app: App
) -> TestServer:
    """The running server of ``cyclehttp_app`` shared by the client and raw fixtures."""
    return await cyclehttp_server(cyclehttp_app)


@_async_fixture("pytest-asyncio", "httpx")
async def cyclehttp_client(cyclehttp_test_server: TestServer) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` whose base URL is a server running ``cyclehttp_app``."""
    import httpx

    async with httpx.AsyncClient(base_url=cyclehttp_test_server.url, timeout=10.0) as client:
        yield client


@_async_fixture("pytest-asyncio")
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
    if not HAS_PYTEST_ASYNCIO:
        return
    name = "asyncio_default_fixture_loop_scope"
    try:
        if not config.getini(name):
            config._inicache[name] = "function"
    except (ValueError, AttributeError):  # pytest-asyncio disabled (-p no:asyncio), or pytest changed
        pass


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark ``async def`` tests that ask for a cyclehttp fixture for pytest-asyncio.

    Runs before pytest-asyncio collects the function, so such tests need no
    ``@pytest.mark.asyncio`` even in pytest-asyncio's strict mode. Without
    pytest-asyncio nothing is marked: the mark would be unknown (a warning, an
    error under ``--strict-markers``), and the fixture's stand-in says what to install.
    """
    if not (HAS_PYTEST_ASYNCIO and inspect.iscoroutinefunction(obj) and name.startswith("test")):
        return
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    marks = getattr(obj, "pytestmark", [])
    if _FIXTURES.intersection(parameters) and not any(m.name == "asyncio" for m in marks):
        pytest.mark.asyncio(obj)

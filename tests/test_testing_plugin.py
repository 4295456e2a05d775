"""The pytest plugin (cyclehttp.testing), tested as a user meets it and in-process.

The first half writes a user's test file into a fresh directory with no
conftest.py and runs pytest on it in a subprocess, so the plugin is loaded
through its ``pytest11`` entry point exactly as it is for a user. The second
half exercises the fixtures and ``start_test_server`` directly, on both event
loops of this suite (see conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import socket
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from cyclehttp import App, Response
from cyclehttp.testing import TestServer, start_test_server

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"
SUBPROCESS_TIMEOUT = 60.0
REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"

ServerFactory = Callable[..., Awaitable[TestServer]]


def run_user_tests(pytester: pytest.Pytester) -> pytest.RunResult:
    """Run pytest on the files in pytester's directory as a user would: a fresh process."""
    # "-W error": the plugin must not make a user's warning-clean run warn.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", timeout=SUBPROCESS_TIMEOUT)


def readme_testing_example() -> str:
    """The first ```python block after the "## Testing your app" heading of README.md."""
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"^## Testing your app[ \t]*$", text, re.MULTILINE)
    assert heading is not None, "README.md has no '## Testing your app' section"
    block = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
    found = block.search(text, heading.end())
    assert found is not None, "no ```python block after '## Testing your app' in README.md"
    next_heading = re.compile(r"^## ", re.MULTILINE).search(text, heading.end())
    assert next_heading is None or found.start() < next_heading.start(), (
        "the first ```python block after '## Testing your app' is in a later section"
    )
    return found.group(1)


# --- As a user: a test file with no conftest.py, plugin from the entry point ---------------------------

USER_TESTS = """
import pytest

from cyclehttp import App, Response

app = App([("GET", "/", Response.text("Hello, World!"))])


@pytest.fixture
def cyclehttp_app():
    return app


async def test_hello(cyclehttp_client):
    response = await cyclehttp_client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello, World!"


async def test_raw_bytes(cyclehttp_raw):
    connection = await cyclehttp_raw()
    await connection.send(b"GET / HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n" * 2)
    first, second = await connection.read_responses(2)
    assert first.body == second.body == b"Hello, World!"


async def test_server(cyclehttp_server):
    server = await cyclehttp_server(app, max_pipelined_requests=4)
    assert server.host == "127.0.0.1" and server.port > 0
    async with await server.raw() as connection:
        await connection.send(b"GET /missing HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n")
        assert (await connection.read_response()).status == 404
    assert server.stats.requests == 1


class TestInAClass:
    async def test_client_in_a_class(self, cyclehttp_client):
        assert (await cyclehttp_client.get("/")).status_code == 200
"""


def test_user_tests_without_conftest_pass(pytester: pytest.Pytester) -> None:
    assert not list(pytester.path.glob("**/conftest.py"))
    pytester.makepyfile(test_user=USER_TESTS)
    result = run_user_tests(pytester)
    result.assert_outcomes(passed=4, warnings=0)


def test_readme_testing_example_passes(pytester: pytest.Pytester) -> None:
    code = readme_testing_example()
    assert "cyclehttp_app" in code and "async def test_" in code
    pytester.makepyfile(test_app=code)
    result = run_user_tests(pytester)
    tests = len(re.findall(r"^async def test_|^def test_", code, re.MULTILINE))
    assert tests >= 3
    result.assert_outcomes(passed=tests, warnings=0)


def test_forgetting_cyclehttp_app_is_an_error_naming_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_forgot="""
        async def test_hello(cyclehttp_client):
            await cyclehttp_client.get("/")


        async def test_raw(cyclehttp_raw):
            await cyclehttp_raw()


        def test_after_it_still_runs():
            pass
        """
    )
    result = run_user_tests(pytester)
    result.assert_outcomes(passed=1, errors=2)
    output = result.stdout.str()
    assert "define a fixture named cyclehttp_app" in output
    result.stdout.fnmatch_lines(["ERROR *test_forgot.py::test_hello*", "ERROR *test_forgot.py::test_raw*"])


def test_a_failing_test_still_shuts_its_servers_down(pytester: pytest.Pytester) -> None:
    ports = pytester.path / "ports.txt"
    pytester.makepyfile(
        test_fails=f"""
        import socket
        from pathlib import Path

        import pytest

        from cyclehttp import App, Response

        PORTS = Path({str(ports)!r})
        KEPT = []
        app = App([("GET", "/", Response.text("hi"))])


        @pytest.fixture
        def cyclehttp_app():
            return app


        async def test_fails_with_servers_and_open_connections(
            cyclehttp_server, cyclehttp_client, cyclehttp_raw
        ):
            server = await cyclehttp_server(app)
            async with await server.raw() as connection:
                await connection.send(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
                await connection.read_response()
            # A keep-alive connection the test leaves open (a plain socket, so nothing
            # but the server's teardown can close it).
            kept = socket.create_connection(("127.0.0.1", server.port), timeout=2.0)
            KEPT.append(kept)
            kept.sendall(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
            raw = await cyclehttp_raw()
            await raw.send(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
            await raw.read_response()
            assert (await cyclehttp_client.get("/")).status_code == 200
            client_port = cyclehttp_client.base_url.port
            PORTS.write_text(f"{{server.port}} {{client_port}}")
            assert False, "the user's test fails"


        def test_its_servers_are_shut_down_afterwards():
            ports = [int(p) for p in PORTS.read_text().split()]
            assert len(ports) == 2
            for port in ports:
                with socket.socket() as sock:
                    sock.settimeout(2.0)
                    with pytest.raises(ConnectionRefusedError):
                        sock.connect(("127.0.0.1", port))
            with KEPT.pop() as kept:
                received = b""
                while chunk := kept.recv(65536):  # b"" once the server has closed it
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200 ")
            assert received.endswith(b"hi")
        """
    )
    result = run_user_tests(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert "the user's test fails" in result.stdout.str()
    assert ports.exists()


# --- In-process: the fixtures on this suite's loops ------------------------------------------------------

APP = App(
    [
        ("GET", "/", Response.text("Hello, World!")),
        ("GET", "/other", Response.text("other")),
    ]
)
LOOP_MODULES: set[str] = set()


@pytest.fixture
def cyclehttp_app() -> App:
    return APP


async def test_server_fixture_returns_where_it_listens(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP)
    assert isinstance(server, TestServer)
    assert server.host == "127.0.0.1"
    assert isinstance(server.port, int) and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    async with await server.raw() as connection:
        await connection.send(REQUEST)
        assert (await connection.read_response()).body == b"Hello, World!"


async def test_server_fixture_takes_a_list_of_routes(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server([("GET", "/", Response.text("from a list"))])
    async with await server.raw() as connection:
        await connection.send(REQUEST)
        assert (await connection.read_response()).body == b"from a list"


async def test_options_reach_the_server_config(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP, max_pipelined_requests=1, graceful_timeout=0.5)
    assert server.server.config.max_pipelined_requests == 1
    assert server.server.config.graceful_timeout == 0.5
    default = await cyclehttp_server(APP)
    assert default.server.config.max_pipelined_requests != 1


async def test_unknown_option_is_a_type_error_naming_it(cyclehttp_server: ServerFactory) -> None:
    with pytest.raises(TypeError, match="max_pipelined_requestz"):
        await cyclehttp_server(APP, max_pipelined_requestz=1)


async def test_bad_option_value_is_a_value_error(cyclehttp_server: ServerFactory) -> None:
    with pytest.raises(ValueError, match="max_pipelined_requests"):
        await cyclehttp_server(APP, max_pipelined_requests=0)


@pytest.mark.parametrize("bad_app", [42, "app", None, {"GET": "/"}])
async def test_an_app_that_is_not_one_is_a_type_error(
    cyclehttp_server: ServerFactory, bad_app: object
) -> None:
    with pytest.raises(TypeError, match=type(bad_app).__name__):
        await cyclehttp_server(bad_app)


async def test_bind_failure_is_a_clear_runtime_error(cyclehttp_server: ServerFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"could not listen on 127\.0\.0\.1:{port}"):
            await asyncio.wait_for(cyclehttp_server(APP, port=port), 5.0)
    # The failed start leaves nothing behind that would trip the fixture's teardown.
    server = await cyclehttp_server(APP)
    assert server.port > 0


async def test_two_servers_in_one_test_are_independent(cyclehttp_server: ServerFactory) -> None:
    first = await cyclehttp_server(APP)
    second = await cyclehttp_server(APP)  # the same App object, started twice
    third = await cyclehttp_server(App([("GET", "/", Response.text("third"))]))
    assert len({first.port, second.port, third.port}) == 3
    async with await first.raw() as connection:
        await connection.send(REQUEST * 3)
        assert [r.status for r in await connection.read_responses(3)] == [200, 200, 200]
    async with await second.raw() as connection:
        await connection.send(REQUEST)
        assert (await connection.read_response()).body == b"Hello, World!"
    async with await third.raw() as connection:
        await connection.send(REQUEST)
        assert (await connection.read_response()).body == b"third"
    assert (first.stats.requests, second.stats.requests, third.stats.requests) == (3, 1, 1)
    assert (first.stats.connections_accepted, second.stats.connections_accepted) == (1, 1)
    await first.close()
    async with await second.raw() as connection:  # closing one leaves the others serving
        await connection.send(REQUEST)
        assert (await connection.read_response()).status == 200


async def test_stats_count_this_servers_requests_only(
    cyclehttp_server: ServerFactory, cyclehttp_client: object, cyclehttp_raw: Callable[[], Awaitable[object]]
) -> None:
    import httpx

    assert isinstance(cyclehttp_client, httpx.AsyncClient)
    other = await cyclehttp_server(APP)
    for _ in range(4):
        assert (await cyclehttp_client.get("/")).status_code == 200
    async with await other.raw() as connection:
        await connection.send(b"GET /other HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await connection.read_response()).body == b"other"
    assert other.stats.requests == 1
    assert other.stats.connections_accepted == 1
    assert other.stats.connections_open == 0 or other.stats.connections_open == 1


@pytest.mark.asyncio
async def test_close_ends_keep_alive_connections_a_test_left_open() -> None:
    server = await start_test_server(APP)
    connection = await server.raw()
    try:
        await connection.send(REQUEST)
        response = await connection.read_response()
        assert response.status == 200
        assert (response.header("connection") or "").lower() != "close"
        assert server.stats.connections_open == 1
        await asyncio.wait_for(server.close(), 5.0)
        assert await connection.is_closed_by_peer(timeout=2.0)
        assert server.stats.connections_open == 0
        assert not server.server.state.connections
        with socket.socket() as probe:
            probe.settimeout(2.0)
            with pytest.raises(ConnectionRefusedError):
                probe.connect(("127.0.0.1", server.port))
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_close_answers_a_request_in_flight_then_closes() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: object) -> str:
        started.set()
        await release.wait()
        return "done"

    server = await start_test_server(App([("GET", "/slow", slow)]))
    async with await server.raw() as connection:
        await connection.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        await asyncio.wait_for(started.wait(), 5.0)
        closing = asyncio.create_task(server.close(timeout=5.0))
        await asyncio.sleep(0.05)
        release.set()
        response = await connection.read_response()
        assert response.body == b"done"
        assert response.header("connection") == "close"
        await asyncio.wait_for(closing, 5.0)
        assert await connection.is_closed_by_peer(timeout=2.0)


async def test_runs_on_the_parametrized_loop(
    request: pytest.FixtureRequest, cyclehttp_server: ServerFactory
) -> None:
    loop = asyncio.get_running_loop()
    module = type(loop).__module__
    LOOP_MODULES.add(module.split(".")[0])
    param_id = request.node.callspec.id
    if "uvloop" in param_id:
        assert module.startswith("uvloop"), module
    else:
        assert "asyncio" in param_id
        assert module.startswith("asyncio"), module
    server = await cyclehttp_server(APP)
    assert server.server.state.loop is loop
    async with await server.raw() as connection:
        await connection.send(REQUEST)
        assert (await connection.read_response()).status == 200


def test_both_loops_were_seen() -> None:
    # Runs after both parametrizations of test_runs_on_the_parametrized_loop (file order).
    if not LOOP_MODULES:
        pytest.skip("test_runs_on_the_parametrized_loop was deselected")
    assert {"asyncio", "uvloop"} <= LOOP_MODULES, LOOP_MODULES


def test_readme_example_is_found() -> None:
    code = readme_testing_example()
    compile(code, "README.md", "exec")
    assert textwrap.dedent(code) == code

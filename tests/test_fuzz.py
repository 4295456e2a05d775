"""Property-based fuzzing: malformed and mutated requests get well-formed answers, and the server lives on.

Two levels, both bounded:

* over real sockets, one server per event loop (asyncio and uvloop) for the module,
  driven from sync hypothesis tests with ``loop.run_until_complete`` (hypothesis and
  pytest-asyncio's per-test loops do not mix);
* in process, HttpProtocol over a fake transport with the checks of the atheris
  harness (tests/fuzz/fuzz_protocol.py), which adds EOF, pause/resume and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cyclehttp import App
from cyclehttp.testing import TestServer, start_test_server
from examples.hello import routes as hello_routes


def _load_harness() -> ModuleType:
    path = Path(__file__).resolve().parent / "fuzz" / "fuzz_protocol.py"
    spec = importlib.util.spec_from_file_location("cyclehttp_fuzz_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _load_harness()

GET_ROOT_CLOSE = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /json HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n",
    b"GET /users/42 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /error HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /sleep/5 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /users/7?a=b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://t/json HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /sleep/3 HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
]
INSERTS = [b"\r", b"\n", b"\0", b" ", b":", b"\t", b"\r\n", b"\r\n\r\n", b"\x7f", b"\xff"]
HUGE_NUMBERS = [b"9" * 30, b"18446744073709551616", b"-1", b"1,1", b"0x10", b"", b" 5", b"+5", b"1e3"]
BAD_CHUNK_SIZES = [b"zz", b"-1", b"f" * 17, b"", b"5 5", b"0x5", b"5;\0", b"ffffffffffffffff"]


OPERATIONS = ["flip", "insert", "delete", "truncate", "dup", "length", "chunk", "splice"]


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(OPERATIONS))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
        elif op == "length":
            text = bytes(data)
            if b"Content-Length: " in text:
                start = text.index(b"Content-Length: ") + len(b"Content-Length: ")
                end = text.find(b"\r\n", start)
                if end < 0:  # a truncation cut the line
                    end = len(text)
                data[start:end] = draw(st.sampled_from(HUGE_NUMBERS))
            else:
                head_end = text.find(b"\r\n") + 2
                data[head_end:head_end] = b"Content-Length: " + draw(st.sampled_from(HUGE_NUMBERS)) + b"\r\n"
        elif op == "chunk":
            text = bytes(data)
            marker = text.find(b"chunked\r\n\r\n")
            if marker >= 0:
                start = marker + len(b"chunked\r\n\r\n")
                end = text.find(b"\r\n", start)
                data[start:end] = draw(st.sampled_from(BAD_CHUNK_SIZES))
        elif op == "splice":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


requests = st.one_of(st.binary(max_size=512), mutated_requests())


class Target:
    """One server on its own event loop, started once for the module."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: TestServer) -> None:
        self.loop = loop
        self.server = server
        self.examples = 0


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    try:
        # The access log (at INFO, so every line is formatted) and the metrics page are on:
        # malformed input goes through their code paths too.
        access = logging.getLogger("cyclehttp.access")
        level = access.level
        access.setLevel(logging.INFO)
        server = loop.run_until_complete(
            start_test_server(App(hello_routes), access_log=True, metrics_path="/metrics")
        )
        try:
            yield Target(loop, server)
        finally:
            access.setLevel(level)
            loop.run_until_complete(server.close())
            leaked = server.server.state.connections
            assert not leaked, f"connections left open after the fuzzing: {leaked}"
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@contextlib.contextmanager
def no_internal_errors() -> Iterator[list[logging.LogRecord]]:
    """Collect "internal error" records of the cyclehttp loggers (a bug in the protocol, not the input)."""
    errors = harness._InternalErrors()
    logger = logging.getLogger("cyclehttp")
    logger.addHandler(errors)
    try:
        yield errors.records
    finally:
        logger.removeHandler(errors)


async def exchange(port: int, pieces: list[bytes], half_close: bool) -> bytes:
    """Send ``pieces`` on one connection; read until the server closes (or, kept alive, goes quiet)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    received = bytearray()
    try:
        with contextlib.suppress(ConnectionError):
            for i, piece in enumerate(pieces):
                if i:
                    await asyncio.sleep(0.002)
                writer.write(piece)
                await asyncio.wait_for(writer.drain(), 5)
            if half_close:
                writer.write_eof()
        # Half-closed, the server must answer what it read and close: a timeout is a hang.
        # Kept open, it may keep the connection alive after complete responses: quiet for 0.2 s ends it.
        quiet = 5.0 if half_close else 0.2
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), quiet)
            except ConnectionError:
                break
            except TimeoutError:
                assert not half_close, f"the server neither answered nor closed; received {bytes(received)!r}"
                break
            if not chunk:
                break
            received += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)
    return bytes(received)


async def still_serving(port: int) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(GET_ROOT_CLOSE)
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nHello, World!"), data


def run_example(target: Target, data: bytes, cuts: list[int], half_close: bool) -> None:
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    port = target.server.port
    with no_internal_errors() as errors:
        received = target.loop.run_until_complete(asyncio.wait_for(exchange(port, pieces, half_close), 15))
        responses = harness.check_responses(received, target.loop)  # raises unless well-formed
        assert all(r.header("connection") != "close" for r in responses[:-1])
        target.examples += 1
        if target.examples % 5 == 0:
            target.loop.run_until_complete(still_serving(port))
    assert not errors, f"internal error for {data!r}: {errors[0].getMessage()}"


FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@FUZZ_SETTINGS
@given(
    data=requests,
    cuts=st.lists(st.integers(0, 600), max_size=2),
    half_close=st.sampled_from([True, True, True, True, True, True, True, True, True, False]),
)
def test_any_bytes_get_well_formed_answers_over_a_socket(
    target: Target, data: bytes, cuts: list[int], half_close: bool
) -> None:
    run_example(target, data, cuts, half_close)


def test_the_server_survived_the_fuzzing(target: Target) -> None:
    target.loop.run_until_complete(still_serving(target.server.port))

    async def settle() -> None:
        while target.server.server.state.connections:
            await asyncio.sleep(0.01)

    target.loop.run_until_complete(asyncio.wait_for(settle(), 5))
    stats = target.server.stats
    assert stats.internal_errors == 0
    assert stats.connections_open == 0
    assert stats.connections_accepted == stats.connections_closed == stats.connection_lifetime.count
    # Every answer was timed: the figures agree with each other after any input.
    assert stats.requests == sum(stats.requests_by_status.values()) > 0
    assert stats.request_latency.count == stats.requests - stats.limit_hits["max_connections"]

    async def metrics_page() -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(target.server.url + "/metrics")).text

    families = {
        family.name
        for family in text_string_to_metric_families(target.loop.run_until_complete(metrics_page()))
    }
    assert "cyclehttp_requests" in families


# The harness may call shutdown() at any point of a connection's life.
SHUTDOWN_EVENT = True


@pytest.fixture(scope="module")
def harness_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


@settings(max_examples=300, deadline=None, database=None)
@given(
    data=requests,
    events=st.lists(st.integers(0, 255), min_size=4, max_size=4),
)
def test_the_protocol_answers_well_formed_over_a_fake_transport(
    harness_loop: asyncio.AbstractEventLoop, data: bytes, events: list[int]
) -> None:
    picks = iter(events)

    def consume(n: int) -> int:
        choice = next(picks, 0) % n
        if n == 8 and choice == 4 and not SHUTDOWN_EVENT:
            return 0
        return choice

    harness.check_one_input(data, consume, harness_loop)

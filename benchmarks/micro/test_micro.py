"""Micro-benchmarks of the hot path, in-process: regressions show in seconds, not in a wrk run.

Run: ``pip install '.[bench]' && python -m pytest benchmarks/micro`` (not part of the
test suite or CI). Each benchmark feeds bytes to an ``HttpProtocol`` over a fake
transport, or calls the router or a histogram directly, so it measures Python
time only: no sockets, no kernel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop

from cyclehttp.app.application import App
from cyclehttp.clock.histogram import LogHistogram
from cyclehttp.clock.stats import Stats
from cyclehttp.config import Config
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.response import Response
from cyclehttp.cycle.server_state import ServerState
from cyclehttp.testing.fake_transport import FakeTransport
from examples.hello import routes

GET_ROOT = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n"
GET_USER = b"GET /users/1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
POST_ECHO = b"POST /echo HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024

# A 4 KiB text route: a static response with an ETag and a gzip variant.
TEXT_4K = Response.text("".join(f"line {i:04d}: the quick brown fox\n" for i in range(160))[:4096])
TEXT_ROUTES = [("GET", "/text", TEXT_4K)]
TEXT_ETAG = PrerenderedResponse(TEXT_4K).etag or b""
GET_TEXT = b"GET /text HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n"
GET_TEXT_304 = b"GET /text HTTP/1.1\r\nHost: localhost:8080\r\nIf-None-Match: " + TEXT_ETAG + b"\r\n\r\n"
GET_TEXT_GZIP = b"GET /text HTTP/1.1\r\nHost: localhost:8080\r\nAccept-Encoding: gzip\r\n\r\n"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


def connection(loop: asyncio.AbstractEventLoop, app_routes: Any = routes, **options: Any) -> HttpProtocol:
    router = App(app_routes).compile()
    stats = Stats()
    stats.attach(router)
    protocol = HttpProtocol(ServerState(router, Config(**options), stats, loop))
    protocol.connection_made(FakeTransport(record=False))
    return protocol


@pytest.mark.parametrize("timing", [True, False], ids=["timing-on", "timing-off"])
@pytest.mark.parametrize(
    ("name", "data"),
    [("static keep-alive", GET_ROOT), ("static pipelined x16", GET_ROOT * 16), ("handler json", GET_USER),
     ("post echo 1KiB", POST_ECHO)],
    ids=["static", "pipelined16", "json", "echo1k"],
)  # fmt: skip
def test_data_received(
    benchmark: Any, loop: asyncio.AbstractEventLoop, name: str, data: bytes, timing: bool
) -> None:
    protocol = connection(loop, timing=timing)
    benchmark.group = name
    feed: Callable[[bytes], None] = protocol.data_received
    benchmark(feed, data)
    assert protocol._state != 3  # not CLOSING: every request was answered and kept alive


@pytest.mark.parametrize(
    ("name", "data"),
    [("static 4KiB text", GET_TEXT), ("static 4KiB text", GET_TEXT_304), ("static 4KiB text", GET_TEXT_GZIP)],
    ids=["static-4k", "static-304", "static-gzip"],
)  # fmt: skip
def test_conditional_static(benchmark: Any, loop: asyncio.AbstractEventLoop, name: str, data: bytes) -> None:
    """The same 4 KiB route answered plain, as a 304 (If-None-Match) and gzip (Accept-Encoding)."""
    protocol = connection(loop, TEXT_ROUTES, timing=False)
    benchmark.group = name
    feed: Callable[[bytes], None] = protocol.data_received
    benchmark(feed, data)
    assert protocol._state != 3


@pytest.mark.parametrize(
    ("method", "path"),
    [(b"GET", b"/"), (b"GET", b"/users/42"), (b"GET", b"/no/such/path"), (b"DELETE", b"/")],
    ids=["static", "dynamic", "404", "405"],
)
def test_router_lookup(benchmark: Any, method: bytes, path: bytes) -> None:
    router = App(routes).compile()
    benchmark.group = "router"
    benchmark(router.lookup, method, path)


def test_histogram_record(benchmark: Any) -> None:
    histogram = LogHistogram()
    benchmark.group = "histogram"
    benchmark(histogram.record, 45_000)

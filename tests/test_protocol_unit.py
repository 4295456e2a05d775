"""HttpProtocol driven directly, without sockets: what end-to-end tests cannot reach."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from cyclehttp import App, Request
from cyclehttp.testing.fake_transport import connect


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize(
    "leaving", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"]
)
def test_a_handler_that_leaves_the_process_is_not_taken_for_an_internal_error(
    loop: asyncio.AbstractEventLoop, leaving: BaseException
) -> None:
    def leave(request: Request) -> str:
        raise leaving

    protocol, transport = connect(App([("GET", "/leave", leave), ("GET", "/", lambda r: "ok")]), loop)
    with pytest.raises(type(leaving)):
        protocol.data_received(b"GET /leave HTTP/1.1\r\nHost: t\r\n\r\n")
    assert protocol._stats.internal_errors == 0
    assert not transport.closed


def test_an_exception_from_a_handler_is_still_a_500(loop: asyncio.AbstractEventLoop) -> None:
    def fail(request: Request) -> str:
        raise ValueError("broken")

    protocol, transport = connect(App([("GET", "/fail", fail)]), loop)
    protocol.data_received(b"GET /fail HTTP/1.1\r\nHost: t\r\n\r\n")
    assert bytes(transport.written).startswith(b"HTTP/1.1 500 ")
    assert protocol._stats.handler_exceptions == 1

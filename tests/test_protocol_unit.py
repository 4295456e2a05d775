"""HttpProtocol driven directly, without sockets: what end-to-end tests cannot reach."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from cyclehttp import App, Request
from cyclehttp.clock.stats import Stats
from cyclehttp.config import Config
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.cycle.server_state import ServerState


class RecordingTransport:
    """Keeps what is written; enough of a transport for one connection."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connect(app: App, loop: asyncio.AbstractEventLoop) -> tuple[HttpProtocol, RecordingTransport]:
    router = app.compile()
    stats = Stats()
    stats.attach(router)
    protocol = HttpProtocol(ServerState(router, Config(), stats, loop))
    transport = RecordingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


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
    assert b"".join(transport.written).startswith(b"HTTP/1.1 500 ")
    assert protocol._stats.handler_exceptions == 1

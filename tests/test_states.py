"""The read state's transitions (``cyclehttp.cycle.states.TRANSITIONS``) are the ones a connection makes.

Connections are driven without sockets (``cyclehttp.testing.fake_transport``)
through scenarios that reach every transition: each method named in the table
is wrapped to record the state before and after it. Every change seen must be
in the table under that method, and every pair of the table must be seen, so
the table can neither miss a transition nor list one that never happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.clock.stats import Stats
from cyclehttp.config import Config
from cyclehttp.cycle import states
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.cycle.server_state import ServerState
from cyclehttp.cycle.states import STATE_NAMES, TRANSITIONS
from cyclehttp.testing.fake_transport import FakeTransport

Seen = set[tuple[str, int, int]]


def recording_protocol(seen: Seen) -> type[HttpProtocol]:
    """HttpProtocol with every method of the table wrapped to record (method, before, after)."""

    def wrap(name: str) -> Callable[..., Any]:
        original = getattr(HttpProtocol, name)

        def method(self: HttpProtocol, *args: Any, **kwargs: Any) -> Any:
            before = self._state
            try:
                return original(self, *args, **kwargs)
            finally:
                seen.add((name, before, self._state))

        return method

    methods: dict[str, Any] = {name: wrap(name) for name in TRANSITIONS}
    return type("RecordingProtocol", (HttpProtocol,), {"__slots__": (), **methods})


async def slow(request: Request) -> str:
    await asyncio.sleep(0.01)
    return "slow"


async def early(request: Request) -> str:
    return "not reading the body"


APP = App(
    [
        ("GET", "/", Response.text("hi")),
        ("POST", "/echo", lambda request: request.body),
        ("GET", "/slow", slow),
    ]
)
APP.add_route("POST", "/early", early, stream_body=True)

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_scenarios(loop: asyncio.AbstractEventLoop, seen: Seen) -> None:
    protocol_class = recording_protocol(seen)

    def made(**options: Any) -> HttpProtocol:
        """A recording connection (its parser calls the wrapped callbacks), not yet made."""
        router = APP.compile()
        stats = Stats()
        stats.attach(router)
        return protocol_class(ServerState(router, Config(**options), stats, loop, APP))

    def new(**options: Any) -> HttpProtocol:
        protocol = made(**options)
        protocol.connection_made(FakeTransport())
        return protocol

    # keep-alive, close, HTTP/1.0
    protocol = new()
    protocol.data_received(GET + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    protocol = new()
    protocol.data_received(b"GET / HTTP/1.0\r\n\r\n")
    # Expect: 100-continue on a static target: answered at once with its final status
    protocol = new()
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    # a stream_body handler that returns before the body is all in
    protocol = new()
    protocol.data_received(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    loop.run_until_complete(asyncio.sleep(0.01))
    # failures from each reading state: a bad first byte (IDLE), headers over the limit (HEAD),
    # a body over the limit (BODY)
    protocol = new()
    protocol.data_received(b"\x01")
    protocol = new(max_header_size=64)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"x" * 100)
    protocol = new(max_body_size=4)
    protocol.data_received(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabcdefghi\r\n"
    )
    # an Upgrade request: answered, then nothing more is parsed
    protocol = new()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n")
    # abort, EOF and a lost connection from each reading state
    partial = {
        states.IDLE: b"",
        states.HEAD: b"GET / HTTP/1.1\r\nHo",
        states.BODY: b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab",
    }
    for data in partial.values():
        for end in ("abort", "eof_received", "connection_lost"):
            protocol = new()
            if data:
                protocol.data_received(data)
            if end == "abort":
                protocol.abort()
            elif end == "eof_received":
                protocol.eof_received()
            else:
                protocol.connection_lost(None)
    # timeouts: idle, header, body
    protocol = new(header_timeout=0.001)
    protocol.check_timeouts(protocol._since + 10**9)
    protocol = new(header_timeout=0.001)
    protocol.data_received(b"GET / HTTP/1.1\r\nHo")
    protocol.check_timeouts(protocol._begin_ns + 10**9)
    protocol = new(body_timeout=0.001)
    protocol.data_received(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab")
    protocol.check_timeouts(protocol._read_ns + 10**9)
    # shutdown of an idle connection
    protocol = new()
    protocol.data_received(GET)
    protocol.shutdown()
    # connection_made: over max_connections, and while the server drains
    refused = made(max_connections=1)
    refused._server.connections.add(object())
    refused.connection_made(FakeTransport())
    draining = made()
    draining._server.draining = True
    draining.connection_made(FakeTransport())


def test_every_transition_made_is_in_the_table_and_every_one_listed_is_made(
    loop: asyncio.AbstractEventLoop,
) -> None:
    seen: Seen = set()
    run_scenarios(loop, seen)
    changes = {(method, before, after) for method, before, after in seen if before != after}
    unlisted = {
        (method, STATE_NAMES[before], STATE_NAMES[after])
        for method, before, after in changes
        if (before, after) not in TRANSITIONS[method]
    }
    assert not unlisted, f"transitions made but not in states.TRANSITIONS: {sorted(unlisted)}"
    never = {
        (method, STATE_NAMES[before], STATE_NAMES[after])
        for method, pairs in TRANSITIONS.items()
        for before, after in pairs
        if (method, before, after) not in changes
    }
    assert not never, f"transitions in states.TRANSITIONS that no scenario made: {sorted(never)}"


def test_the_table_names_methods_of_the_connection() -> None:
    for method in TRANSITIONS:
        assert callable(getattr(HttpProtocol, method, None)), method

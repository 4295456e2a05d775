"""A transport that writes nowhere, for driving ``HttpProtocol`` without sockets.

Protocol unit tests, fuzzers and in-process micro-benchmarks feed bytes to a
connection's ``data_received`` and read what it wrote here, with exact control
of timing and fragmentation (as uvicorn's MockTransport). The real-socket tests
stay the end-to-end truth; this is for what they cannot reach.

``connect(app)`` builds a connection of ``app`` on a ``FakeTransport``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cyclehttp.app.application import App
from cyclehttp.clock.stats import Stats
from cyclehttp.config import Config
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.cycle.server_state import ServerState

__all__ = ["FakeTransport", "connect"]

PEER = ("127.0.0.1", 40000)
SOCKNAME = ("127.0.0.1", 8000)


class FakeTransport(asyncio.Transport):
    """Keeps what the protocol writes and records the calls it makes; writing after a close fails.

    ``record=False`` keeps nothing (a benchmark's transport): writes are counted, not stored.
    """

    def __init__(self, *, record: bool = True, can_write_eof: bool = True) -> None:
        super().__init__()
        self.record = record
        self.written = bytearray()
        self.writes = 0
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.calls: list[str] = []
        self._can_write_eof = can_write_eof

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed or self.eof_written:
            after = "close" if self.closed else "write_eof"
            raise AssertionError(f"write after {after}: {bytes(data)[:80]!r}")
        self.writes += 1
        if self.record:
            self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def take(self) -> bytes:
        """What was written since the last call."""
        data = bytes(self.written)
        self.written.clear()
        return data

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return self._can_write_eof

    def write_eof(self) -> None:
        self.calls.append("write_eof")
        self.eof_written = True

    def pause_reading(self) -> None:
        if self.record:
            self.calls.append("pause_reading")
        self.reading = False

    def resume_reading(self) -> None:
        if self.record:
            self.calls.append("resume_reading")
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER, "sockname": SOCKNAME}.get(name, default)


def connect(
    app: App,
    loop: asyncio.AbstractEventLoop,
    config: Config | None = None,
    transport: FakeTransport | None = None,
) -> tuple[HttpProtocol, FakeTransport]:
    """A connection of ``app`` (compiled now) on ``transport``, made as a server makes one."""
    router = app.compile()
    stats = Stats()
    stats.attach(router)
    protocol = HttpProtocol(ServerState(router, config or Config(), stats, loop, app))
    transport = transport if transport is not None else FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport

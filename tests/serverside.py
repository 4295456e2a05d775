"""Helpers for tests that look at the server's side of a connection or read slowly."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.005)


async def the_connection(server: TestServer) -> HttpProtocol:
    """The server side of the one connection open to ``server``."""
    connections = server.server.state.connections
    await wait_for(lambda: len(connections) == 1, what="one server-side connection")
    return next(iter(connections))


async def small_window_connection(
    server: TestServer, receive_buffer: int = 64 * 1024, timeout: float = 10
) -> tuple[RawConnection, asyncio.StreamReader]:
    """A connection with a small receive buffer, so the server's writes back up soon when it stops reading."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (server.host, server.port)), 5)
    reader, writer = await asyncio.open_connection(sock=sock)
    return RawConnection(reader, writer, timeout=timeout), reader

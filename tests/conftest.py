"""Every async test of the project runs twice: on asyncio's own loop and on uvloop."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import pytest
import pytest_asyncio
import uvloop

from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Callable[[TestServer], Awaitable[RawConnection]]]:
    """Raw connections to any test server, all closed at teardown."""
    opened: list[RawConnection] = []

    async def open_to(server: TestServer) -> RawConnection:
        conn = await server.raw()
        opened.append(conn)
        return conn

    try:
        yield open_to
    finally:
        for conn in opened:
            await conn.close()

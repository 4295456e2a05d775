"""Limits and timeouts over real sockets: each refuses with its status, closes, and the server goes on."""

import asyncio
import contextlib
import resource
import socket

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection, RawResponse


def echo(request: Request) -> bytes:
    return request.body


ROUTES = [("GET", "/", Response.text("Hello, World!")), ("POST", "/echo", echo)]
GET_ROOT = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


async def refused(connection: RawConnection, status: int) -> RawResponse:
    response = await connection.read_response()
    assert response.status == status
    assert response.header("connection") == "close"
    assert await connection.is_closed_by_peer(timeout=5)
    return response


async def still_serving(server: TestServer) -> None:
    async with await server.raw() as connection:
        await connection.send(GET_ROOT)
        assert (await connection.read_response()).body == b"Hello, World!"


async def test_headers_over_the_limit_are_431(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_header_size=1024)
    async with await server.raw() as connection:
        await connection.send(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"a" * 2000 + b"\r\n\r\n")
        response = await refused(connection, 431)
        assert b"1024" in response.body
    await still_serving(server)


async def test_many_small_headers_over_the_limit_are_431(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_header_size=1024)
    async with await server.raw() as connection:
        await connection.send(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 200 + b"\r\n")
        await refused(connection, 431)


async def test_an_endless_header_line_is_431_before_it_ends(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_header_size=1024)
    async with await server.raw() as connection:
        await connection.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        with contextlib.suppress(ConnectionError):  # the server may close while we still send
            for _ in range(10):
                await connection.send(b"a" * 512)  # never a CRLF
        await refused(connection, 431)
    await still_serving(server)


async def test_headers_at_the_limit_are_served(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_header_size=1024)
    async with await server.raw() as connection:
        await connection.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 900 + b"\r\n\r\n")
        assert (await connection.read_response()).status == 200


async def test_long_request_target_is_414(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_url_length=256)
    async with await server.raw() as connection:
        await connection.send(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        await refused(connection, 414)
    await still_serving(server)


async def test_declared_body_over_the_limit_is_413_before_it_is_read(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_body_size=1000)
    async with await server.raw() as connection:
        # Only the head is sent: the answer cannot wait for the body.
        await connection.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        await refused(connection, 413)
    await still_serving(server)


async def test_chunked_body_over_the_limit_is_413(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_body_size=1000)
    async with await server.raw() as connection:
        await connection.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            await connection.send(b"200\r\n" + b"x" * 512 + b"\r\n")
        await refused(connection, 413)
    await still_serving(server)


async def test_body_at_the_limit_is_served(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_body_size=1000)
    async with await server.raw() as connection:
        await connection.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"y" * 1000)
        assert (await connection.read_response()).body == b"y" * 1000


async def test_slowloris_headers_are_408_after_the_header_timeout(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), header_timeout=0.5)
    async with await server.raw(timeout=5) as connection:
        await connection.send(b"GET / HTTP/1.1\r\n")

        async def drip() -> None:  # a byte now and then: the timer runs from the first byte, not the last
            with contextlib.suppress(ConnectionError):
                for _ in range(40):
                    await asyncio.sleep(0.25)
                    await connection.send(b"X")

        dripping = asyncio.create_task(drip())
        try:
            response = await refused(connection, 408)
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dripping
        assert b"headers" in response.body


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), header_timeout=0.5)
    async with await server.raw() as connection:
        assert await connection.is_closed_by_peer(timeout=5)


async def test_empty_lines_do_not_keep_a_connection_open(cyclehttp_server) -> None:
    """CRLFs before a request line start no request: dripping them must not reset the timeout."""
    server = await cyclehttp_server(App(ROUTES), header_timeout=0.5, keep_alive_timeout=0.5)
    async with await server.raw() as connection:
        await connection.send(GET_ROOT)
        assert (await connection.read_response()).status == 200
        closed = False
        for _ in range(40):  # 4 s of CRLFs, a few per timeout
            try:
                await connection.send(b"\r\n")
            except (ConnectionError, OSError):
                closed = True
                break
            if await connection.is_closed_by_peer(timeout=0.1):
                closed = True
                break
        assert closed


async def test_stalled_body_is_408_after_the_body_timeout(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), body_timeout=0.5)
    async with await server.raw() as connection:
        await connection.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        await refused(connection, 408)


async def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), keep_alive_timeout=0.5)
    async with await server.raw() as connection:
        await connection.send(GET_ROOT)
        assert (await connection.read_response()).status == 200
        assert await connection.is_closed_by_peer(timeout=5)


async def test_connections_over_the_limit_get_503_and_the_others_are_served(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES), max_connections=2)
    first, second = await server.raw(), await server.raw()
    try:
        await first.send(GET_ROOT)
        assert (await first.read_response()).status == 200  # both accepted by now
        await second.send(GET_ROOT)
        assert (await second.read_response()).status == 200
        async with await server.raw() as third:
            response = await third.read_response()
            assert response.status == 503
            assert await third.is_closed_by_peer()
        await first.send(GET_ROOT)
        assert (await first.read_response()).status == 200
    finally:
        await first.close()
        await second.close()


async def never_reading_client(port: int, request: bytes) -> socket.socket:
    """A client that sends ``request`` and never reads: a tiny receive buffer, so the answer stalls."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 5)
    await asyncio.wait_for(loop.sock_sendall(sock, request), 5)
    return sock


async def served_fresh(server: TestServer) -> int:
    """The status a fresh client gets for GET / (a 503 while every slot is taken)."""
    async with await server.raw() as conn:
        await conn.send(GET_ROOT)
        return (await conn.read_response()).status


async def test_clients_that_never_read_cannot_keep_a_fresh_client_out(cyclehttp_server) -> None:
    """send_timeout: a client leaving its answer unread loses its connection, and its slot."""
    big = Response(b"x" * (4 * 1024 * 1024))
    server = await cyclehttp_server(
        App([*ROUTES, ("GET", "/big", big)]), max_connections=50, send_timeout=0.5
    )
    stalled = [
        await never_reading_client(server.port, b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n") for _ in range(50)
    ]
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while server.stats.connections_open < 50:  # every slot taken
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert await served_fresh(server) == 503
        while (status := await served_fresh(server)) != 200:  # the send timeout frees the slots
            assert status == 503
            assert asyncio.get_running_loop().time() < deadline, "the stalled clients kept every slot"
            await asyncio.sleep(0.1)
        while server.stats.timeouts["send_timeout"] < 50:  # and every one of them is let go
            assert asyncio.get_running_loop().time() < deadline, server.stats.timeouts
            await asyncio.sleep(0.1)
        while server.stats.connections_open:  # the last fresh client's close may still be on its way
            assert asyncio.get_running_loop().time() < deadline, server.stats.connections_open
            await asyncio.sleep(0.01)
    finally:
        for sock in stalled:
            sock.close()


async def test_a_slow_but_reading_client_is_not_cut_off(cyclehttp_server) -> None:
    """The timer runs while the client reads nothing at all, not for the whole answer."""
    big = Response(b"y" * (4 * 1024 * 1024))
    server = await cyclehttp_server(App([("GET", "/big", big)]), send_timeout=0.5)
    async with await server.raw() as conn:
        await conn.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.3)  # not reading yet, under the timeout
        response = await conn.read_response(timeout=10)
    assert response.status == 200 and len(response.body) == 4 * 1024 * 1024
    assert server.stats.timeouts["send_timeout"] == 0


# Each stalled connection holds two descriptors in this process (client and server side).
STALLED = min(1000, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100) // 2)


async def test_many_stalled_connections_do_not_delay_a_fresh_request(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES))
    stalled = []
    try:
        for _ in range(STALLED):
            connection = await server.raw()
            await connection.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Half: ")
            stalled.append(connection)
        await asyncio.wait_for(still_serving(server), timeout=5)
        assert server.stats.connections_open == STALLED
    finally:
        await asyncio.gather(*(c.close() for c in stalled))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_header_size", 0),
        ("max_body_size", -1),
        ("header_timeout", 0),
        ("keep_alive_timeout", "x"),
        ("send_timeout", 0),
        ("send_timeout", -1.0),
    ],
)
async def test_bad_limit_is_a_clear_error(cyclehttp_server, option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        await cyclehttp_server(App(ROUTES), **{option: value})

"""Methods the server does not route: ``OPTIONS *`` and methods it does not implement.

RFC 9112 section 3.2.4: the asterisk form ``*`` is the request target of a
server-wide ``OPTIONS``; the answer is 200 with ``Allow`` listing every method
the server serves, without a route lookup. RFC 9110 section 9.1 / 15.6.2: a
method the server does not implement is 501, a request line that is not one 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from cyclehttp import App, Response
from cyclehttp.testing import TestServer
from examples.hello import routes

ServerFactory = Callable[..., Awaitable[TestServer]]

GET_ROOT = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


async def test_options_asterisk_lists_every_method_served(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(App(routes))
    async with await server.raw() as conn:
        await conn.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n" + GET_ROOT)
        options, hello = await conn.read_responses(2)
    assert options.status == 200
    assert options.header("allow") == "GET, HEAD, OPTIONS, POST"
    assert options.header("content-length") == "0"
    assert options.header("date") is not None
    assert options.header("connection") is None  # keep-alive: the next request is answered
    assert hello.status == 200 and hello.body == b"Hello, World!"


async def test_options_asterisk_needs_no_options_route_and_ignores_path_routes(
    cyclehttp_server: ServerFactory,
) -> None:
    app = App([("PUT", "/items/{id:int}", lambda request: "ok"), ("DELETE", "/x", Response.text("x"))])
    server = await cyclehttp_server(app, metrics_path="/metrics")
    async with await server.raw() as conn:
        await conn.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
        options = await conn.read_response()
    # The metrics page (GET, HEAD) is served too, so it is part of the server's methods.
    assert options.header("allow") == "DELETE, GET, HEAD, OPTIONS, PUT"
    assert server.stats.requests == 1


@pytest.mark.parametrize("method", [b"GET", b"POST", b"HEAD", b"DELETE"])
async def test_the_asterisk_form_with_another_method_is_400(
    cyclehttp_server: ServerFactory, method: bytes
) -> None:
    server = await cyclehttp_server(App(routes))
    async with await server.raw() as conn:
        await conn.send(method + b" * HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        response = await conn.read_response(head=method == b"HEAD")
        assert response.status == 400
        assert response.header("connection") == "close"


@pytest.mark.parametrize("method", [b"BLARGH", b"-BLARGH", b"X_CUSTOM.1", b"FOO~BAR"])
async def test_a_method_the_server_does_not_implement_is_501(
    cyclehttp_server: ServerFactory, method: bytes
) -> None:
    server = await cyclehttp_server(App(routes))
    async with await server.raw() as conn:
        await conn.send(method + b" /foo HTTP/1.1\r\nHost: t\r\n\r\n")
        response = await conn.read_response()
        assert response.status == 501
        assert response.body == b"the method " + method + b" is not implemented"
        assert response.header("connection") == "close"
        assert await conn.is_closed_by_peer(timeout=5.0)
    async with await server.raw() as other:  # everyone else is served
        await other.send(GET_ROOT)
        assert (await other.read_response()).status == 200
    snapshot = server.stats
    assert snapshot.parse_errors == 0  # a well-formed request, refused: counted in its status class
    assert snapshot.requests_by_status["5xx"] == 1


@pytest.mark.parametrize(
    "request_line",
    [
        b"GE(T / HTTP/1.1",
        b"GET/ HTTP/1.1",
        b"BLARGH / HTTP/1.1 extra",
        b"BLARGH  / HTTP/1.1",
        b"\x00GET / HTTP/1.1",
    ],
)
async def test_a_request_line_that_is_not_one_is_400(
    cyclehttp_server: ServerFactory, request_line: bytes
) -> None:
    server = await cyclehttp_server(App(routes))
    async with await server.raw() as conn:
        await conn.send(request_line + b"\r\nHost: t\r\n\r\n")
        response = await conn.read_response()
        assert response.status == 400
        assert response.header("connection") == "close"


async def test_a_known_method_on_a_path_without_it_is_still_405(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(App(routes))
    async with await server.raw() as conn:
        await conn.send(b"PROPFIND / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = await conn.read_response()
    assert response.status == 405
    assert response.header("allow") == "GET, HEAD"

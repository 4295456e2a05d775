"""Request hooks (@app.before_request, @app.after_request), over real sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cyclehttp import App, HTTPError, Request, Response
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]


def make_app() -> App:
    app = App()

    @app.get("/sync")
    def sync(request: Request) -> dict[str, Any]:
        return {"who": getattr(request, "_user", None) or "nobody"}

    @app.get("/async")
    async def async_(request: Request) -> str:
        await asyncio.sleep(0)
        return "async"

    @app.post("/echo")
    def echo(request: Request) -> bytes:
        return request.body

    @app.get("/stream")
    def stream(request: Request) -> Any:
        return Response.stream([b"a", b"b"])

    app.add_route("GET", "/static", Response.text("static body"))
    return app


async def send(server: TestServer, path: str, *headers: str, method: str = "GET") -> RawResponse:
    conn = await server.raw()
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *headers]
    await conn.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    return await conn.read_response()


async def test_before_hook_short_circuits_and_passes_through(cyclehttp_server: ServerFactory) -> None:
    app = make_app()
    order: list[str] = []

    @app.before_request
    def first(request: Request) -> Any:
        order.append("first")
        if "authorization" not in request.headers:
            return Response.text("login first", status=401, headers={"WWW-Authenticate": "Bearer"})
        return None

    @app.before_request
    async def second(request: Request) -> None:
        order.append("second")

    server = await cyclehttp_server(app)
    refused = await send(server, "/sync")
    assert (refused.status, refused.body, refused.header("www-authenticate")) == (
        401,
        b"login first",
        "Bearer",
    )
    assert order == ["first"]
    allowed = await send(server, "/sync", "Authorization: Bearer x")
    assert (allowed.status, allowed.json()) == (200, {"who": "nobody"})
    assert order == ["first", "first", "second"]
    static = await send(server, "/static")  # static routes never run hooks
    assert (static.status, static.body) == (200, b"static body")
    assert order == ["first", "first", "second"]


@pytest.mark.parametrize("path", ["/sync", "/async"])
async def test_after_hooks_add_headers_in_declaration_order(
    cyclehttp_server: ServerFactory, path: str
) -> None:
    app = make_app()

    @app.after_request
    def tag(request: Request, response: Response) -> Response:
        return response.with_headers({"X-Order": "first"})

    @app.after_request
    async def keep(request: Request, response: Response) -> None:
        assert response.headers[-1] == ("X-Order", "first")

    @app.after_request
    def second(request: Request, response: Response) -> Response:
        return response.with_headers([("X-Order", "second")])

    server = await cyclehttp_server(app)
    response = await send(server, path)
    assert response.status == 200
    assert response.header_all("x-order") == ["first", "second"]
    static = await send(server, "/static")
    assert static.header("x-order") is None
    assert (await send(server, "/nope")).header("x-order") is None  # the 404 is not a handler route


async def test_after_hooks_see_error_handler_answers_and_skip_streams(
    cyclehttp_server: ServerFactory,
) -> None:
    app = make_app()

    @app.get("/forbidden")
    def forbidden(request: Request) -> str:
        raise HTTPError(403)

    app.error_handler(403)(lambda request, exc: "no")
    app.after_request(lambda request, response: response.with_headers({"X-Seen": str(response.status)}))
    server = await cyclehttp_server(app)
    refused = await send(server, "/forbidden")
    assert (refused.status, refused.header("x-seen")) == (403, "403")
    streamed = await send(server, "/stream")
    assert (streamed.body, streamed.header("x-seen")) == (b"ab", None)


@pytest.mark.parametrize("where", ["before", "after"])
async def test_a_raising_hook_is_a_500_and_the_server_keeps_serving(
    cyclehttp_server: ServerFactory, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    app = make_app()
    calls = 0

    def flaky(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("hook broke")

    if where == "before":
        app.before_request(lambda request: flaky())
    else:
        app.after_request(lambda request, response: flaky())
    server = await cyclehttp_server(app)
    conn = await server.raw()
    with caplog.at_level(logging.ERROR, logger="cyclehttp.error"):
        await conn.send(b"GET /sync HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
        failed, served = await conn.read_responses(2)
    assert (failed.status, failed.body) == (500, b"Internal Server Error")
    assert (served.status, served.json()) == (200, {"who": "nobody"})
    assert "hook broke" in caplog.text


async def test_a_raising_hook_goes_through_the_error_handlers(cyclehttp_server: ServerFactory) -> None:
    app = make_app()

    @app.before_request
    def deny(request: Request) -> None:
        raise PermissionError("no")

    @app.error_handler(PermissionError)
    def denied(request: Request, exc: PermissionError) -> Response:
        return Response.text("denied", status=403)

    server = await cyclehttp_server(app)
    assert (await send(server, "/async")).status == 403
    assert (await send(server, "/sync")).body == b"denied"


async def test_hooks_on_a_post_with_a_body(cyclehttp_server: ServerFactory) -> None:
    app = make_app()
    app.after_request(lambda request, response: response.with_headers({"X-Len": str(len(request.body))}))
    server = await cyclehttp_server(app)
    conn = await server.raw()
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    response = await conn.read_response()
    assert (response.body, response.header("x-len"), response.header("content-type")) == (
        b"hello",
        "5",
        "application/octet-stream",
    )


async def test_static_answers_are_byte_identical_with_hooks(cyclehttp_server: ServerFactory) -> None:
    request = b"GET /static HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n"

    async def exchange(app: App) -> bytes:
        server = await cyclehttp_server(app)
        conn = await server.raw()
        await conn.send(request)
        responses = await conn.read_responses(2)
        return b"".join(r.raw for r in responses)

    plain = await exchange(make_app())
    hooked_app = make_app()
    hooked_app.before_request(lambda request: Response.text("hooked", status=401))
    hooked_app.after_request(lambda request, response: response.with_headers({"X-Hook": "1"}))
    hooked = await exchange(hooked_app)
    # the Date may tick between the two servers: compare without it
    strip = [line for line in plain.split(b"\r\n") if not line.startswith(b"Date:")]
    assert strip == [line for line in hooked.split(b"\r\n") if not line.startswith(b"Date:")]
    assert b"static body" in hooked


def test_the_router_calls_the_handler_itself_without_hooks() -> None:
    app = make_app()
    handlers = {spec.target.handler for spec in app.routes if hasattr(spec.target, "handler")}
    compiled = {getattr(t, "handler", None) for t in app.compile().targets}
    assert handlers <= compiled
    app.before_request(lambda request: None)
    compiled = {getattr(t, "handler", None) for t in app.compile().targets}
    assert not handlers & compiled


def test_wrong_hook_shapes_are_refused_at_registration() -> None:
    app = App()
    with pytest.raises(TypeError, match="not callable"):
        app.before_request(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"def hook\(request\)"):
        app.before_request(lambda: None)
    with pytest.raises(TypeError, match=r"def hook\(request, response\)"):
        app.after_request(lambda request: None)  # type: ignore[arg-type,return-value]
    assert not app._before and not app._after


async def test_an_after_hook_returning_the_wrong_type_is_a_500(cyclehttp_server: ServerFactory) -> None:
    app = make_app()
    app.after_request(lambda request, response: "not a response")  # type: ignore[arg-type,return-value]
    server = await cyclehttp_server(app)
    assert (await send(server, "/sync")).status == 500

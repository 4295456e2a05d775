"""Error handlers (@app.error_handler) and the default error bodies, over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cyclehttp import App, HTTPError, Request, Response
from cyclehttp.cycle.negotiation import prefers_json
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]


class AppError(Exception):
    pass


class NotFoundInDb(AppError):
    pass


def make_app(**options: Any) -> App:
    app = App(**options)

    @app.get("/items/{n:int}")
    def item(request: Request) -> dict[str, Any]:
        if request.params["n"] == 0:
            raise NotFoundInDb("no item 0")
        return {"n": request.params["n"]}

    @app.get("/forbidden")
    def forbidden(request: Request) -> str:
        raise HTTPError(403, "keep out")

    @app.get("/app-error")
    def app_error(request: Request) -> str:
        raise AppError("plain")

    @app.get("/boom")
    def boom(request: Request) -> str:
        raise RuntimeError("secret internals")

    @app.post("/only-post")
    def only_post(request: Request) -> str:
        return "posted"

    app.add_route("GET", "/static", Response.text("static"))
    return app


async def get(server: TestServer, path: str, *headers: str, method: str = "GET") -> RawResponse:
    conn = await server.raw()
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *headers]
    await conn.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    return await conn.read_response()


async def test_status_handlers_for_404_405_and_a_raised_403(cyclehttp_server: ServerFactory) -> None:
    app = make_app()
    seen: list[HTTPError] = []

    @app.error_handler(404)
    def not_found(request: Request, exc: HTTPError) -> dict[str, Any]:
        seen.append(exc)
        return {"missing": request.path}

    @app.error_handler(405)
    def not_allowed(request: Request, exc: HTTPError) -> str:
        seen.append(exc)
        return f"use {dict(exc.headers or {})['Allow']}"

    @app.error_handler(403)
    def forbidden(request: Request, exc: HTTPError) -> Response:
        return Response.text(f"custom: {exc.detail}", status=418)

    server = await cyclehttp_server(app)
    missing = await get(server, "/nope")
    assert (missing.status, missing.json()) == (404, {"missing": "/nope"})
    wrong = await get(server, "/only-post")
    assert wrong.status == 405
    assert wrong.header("allow") == "POST"  # the HTTPError's headers go with a data result
    assert wrong.body == b"use POST"
    teapot = await get(server, "/forbidden")
    assert (teapot.status, teapot.body) == (418, b"custom: keep out")  # a Response: as it is
    assert [e.status for e in seen] == [404, 405]


async def test_head_on_a_handled_404_has_no_body(cyclehttp_server: ServerFactory) -> None:
    app = make_app()
    app.error_handler(404)(lambda request, exc: "gone")
    server = await cyclehttp_server(app)
    conn = await server.raw()
    await conn.send(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n")
    response = await conn.read_response(head=True)
    assert (response.status, response.header("content-length"), response.body) == (404, "4", b"")


async def test_exception_class_handlers_most_specific_wins(cyclehttp_server: ServerFactory) -> None:
    app = make_app()

    @app.error_handler(AppError)
    def app_error(request: Request, exc: AppError) -> str:
        return f"app: {exc}"

    @app.error_handler(NotFoundInDb)
    def db_error(request: Request, exc: NotFoundInDb) -> Response:
        return Response.text(f"db: {exc}", status=404)

    server = await cyclehttp_server(app)
    specific = await get(server, "/items/0")
    assert (specific.status, specific.body) == (404, b"db: no item 0")
    general = await get(server, "/app-error")
    assert (general.status, general.body) == (500, b"app: plain")  # data: the error's status
    fine = await get(server, "/items/3")
    assert (fine.status, fine.json()) == (200, {"n": 3})
    unhandled = await get(server, "/boom")
    assert (unhandled.status, unhandled.body) == (500, b"Internal Server Error")


async def test_the_500_handler_gets_unhandled_exceptions(
    cyclehttp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    @app.error_handler(500)
    async def internal(request: Request, exc: HTTPError) -> str:
        await asyncio.sleep(0)
        return f"sorry ({type(exc.__cause__).__name__})"

    server = await cyclehttp_server(app)
    with caplog.at_level(logging.ERROR, logger="cyclehttp.error"):
        response = await get(server, "/boom")
    assert (response.status, response.body) == (500, b"sorry (RuntimeError)")
    assert "secret internals" in caplog.text  # the bug is still logged


async def test_async_error_handlers(cyclehttp_server: ServerFactory) -> None:
    app = make_app()

    @app.error_handler(404)
    async def not_found(request: Request, exc: HTTPError) -> str:
        await asyncio.sleep(0.001)
        return "async not found"

    @app.error_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> str:
        await asyncio.sleep(0.001)
        return "async app error"

    server = await cyclehttp_server(app)
    assert (await get(server, "/nope")).body == b"async not found"
    assert (await get(server, "/app-error")).body == b"async app error"
    assert (await get(server, "/items/1")).json() == {"n": 1}


@pytest.mark.parametrize("is_async", [False, True])
async def test_an_error_handler_that_raises_is_the_default_500(
    cyclehttp_server: ServerFactory, caplog: pytest.LogCaptureFixture, is_async: bool
) -> None:
    app = make_app()

    if is_async:

        async def broken(request: Request, exc: Exception) -> str:
            raise HTTPError(402)  # even an HTTPError: the error handler failed

    else:

        def broken(request: Request, exc: Exception) -> str:  # type: ignore[misc]
            raise ValueError("broken handler")

    app.error_handler(AppError)(broken)
    app.error_handler(404)(broken)
    server = await cyclehttp_server(app)
    with caplog.at_level(logging.ERROR, logger="cyclehttp.error"):
        failed = await get(server, "/app-error")
        missing = await get(server, "/nope")
    assert (failed.status, failed.body) == (500, b"Internal Server Error")
    assert missing.status == 500
    assert "error handler" in caplog.text
    assert (await get(server, "/items/2")).json() == {"n": 2}  # the server keeps serving


@pytest.mark.parametrize(
    ("accept", "is_json"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", True),
        ("application/json, text/plain;q=0.5", True),
        ("text/html,application/json;q=0.9", False),
        ("text/plain;q=0.1, application/*", True),
        ("application/json;q=0", False),
        ("text/*;q=0.3, application/json;q=0.4", True),
    ],
)
def test_prefers_json(accept: str | None, is_json: bool) -> None:
    assert prefers_json(accept) is is_json


@pytest.mark.parametrize(
    ("debug", "where"), [(False, "app"), (True, "app"), (True, "config")], ids=["off", "app", "config"]
)
async def test_default_bodies_by_accept_and_debug(
    cyclehttp_server: ServerFactory, debug: bool, where: str
) -> None:
    if where == "config":  # --debug / Config(debug=True), the app itself not in debug
        server = await cyclehttp_server(make_app(debug=False), debug=True)
    else:
        server = await cyclehttp_server(make_app(debug=debug))
    text = await get(server, "/forbidden", "Accept: text/html, application/json;q=0.9")
    assert (text.status, text.header("content-type"), text.body) == (
        403,
        "text/plain; charset=utf-8",
        b"keep out",
    )
    as_json = await get(server, "/forbidden", "Accept: application/json, text/plain;q=0.5")
    assert as_json.header("content-type") == "application/json"
    assert as_json.json() == {"error": "keep out", "status": 403}
    plain_500 = await get(server, "/boom")
    json_500 = await get(server, "/boom", "Accept: application/json")
    assert plain_500.status == json_500.status == 500
    if debug:
        assert plain_500.body.startswith(b"Internal Server Error\n\nTraceback")
        assert b"secret internals" in plain_500.body
        assert "secret internals" in json_500.json()["traceback"]
    else:
        assert plain_500.body == b"Internal Server Error"
        assert json_500.json() == {"error": "Internal Server Error", "status": 500}
    # the pre-rendered 404 stays plain text whatever Accept says (no handler registered)
    missing = await get(server, "/nope", "Accept: application/json")
    assert (missing.status, missing.body) == (404, b"Not Found")


def test_static_404_and_405_stay_pre_rendered_without_a_handler() -> None:
    from cyclehttp.cycle.prerendered import PrerenderedResponse
    from cyclehttp.cycle.targets import HandlerTarget

    app = make_app()
    router = app.compile()
    assert isinstance(router.not_found, PrerenderedResponse)
    assert all(isinstance(router.targets[e.not_allowed], PrerenderedResponse) for e in router.exact.values())
    app.error_handler(405)(lambda request, exc: "no")
    router = app.compile()
    assert isinstance(router.not_found, PrerenderedResponse)
    assert all(isinstance(router.targets[e.not_allowed], HandlerTarget) for e in router.exact.values())


def test_wrong_shapes_are_refused_at_registration() -> None:
    app = App()
    with pytest.raises(ValueError, match="400 to 599"):
        app.error_handler(302)
    with pytest.raises(ValueError, match="400 to 599"):
        app.error_handler(600)
    with pytest.raises(TypeError, match="exception class"):
        app.error_handler(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="status"):
        app.error_handler("404")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="status"):
        app.error_handler(True)
    with pytest.raises(TypeError, match="not callable"):
        app.add_error_handler(404, "nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"def handler\(request, exc\)"):
        app.error_handler(404)(lambda request: "one argument")
    with pytest.raises(TypeError, match=r"def handler\(request, exc\)"):
        app.error_handler(KeyError)(lambda: "none")
    assert not app._errors  # nothing half-registered


def test_json_error_body_is_valid_json() -> None:
    from cyclehttp.cycle.response import error_response

    response = error_response(404, accept="application/json")
    assert json.loads(response.body) == {"error": "Not Found", "status": 404}

"""``Response.set_cookie`` and friends: a cookie is sent, or the change is refused loudly.

``set_cookie``/``delete_cookie`` change the response they are called on and
return it, so both the Flask/Starlette habit (``r.set_cookie(...); return r``) and
chaining work. ``with_cookie``/``without_cookie`` return a changed copy. A
response shared by many requests (a route's pre-rendered target, or one frozen
with ``freeze()``) refuses to change with ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.testing import TestServer

ServerFactory = Callable[..., Awaitable[TestServer]]


def cookies_of(response: Response) -> list[str]:
    return [value for name, value in response.headers if name == "Set-Cookie"]


def test_set_cookie_changes_the_response_and_returns_it() -> None:
    response = Response.json({"ok": True})
    returned = response.set_cookie("sid", "abc", httponly=True)
    assert returned is response
    assert cookies_of(response) == ["sid=abc; Path=/; HttpOnly; SameSite=Lax"]
    assert b"Set-Cookie: sid=abc; Path=/; HttpOnly; SameSite=Lax\r\n" in response.render(0, False)


def test_chained_cookies_are_all_sent() -> None:
    response = Response.text("hi").set_cookie("a", "1").set_cookie("b", "2").delete_cookie("old")
    assert cookies_of(response) == [
        "a=1; Path=/; SameSite=Lax",
        "b=2; Path=/; SameSite=Lax",
        "old=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    ]


def test_with_cookie_and_without_cookie_leave_the_original_alone() -> None:
    original = Response.text("hi")
    added = original.with_cookie("a", "1", secure=True, samesite="strict")
    removed = added.without_cookie("a")
    assert cookies_of(original) == []
    assert cookies_of(added) == ["a=1; Path=/; Secure; SameSite=Strict"]
    assert cookies_of(removed)[-1].startswith("a=; Max-Age=0; Path=/")
    assert added is not original and removed is not added


def test_an_invalid_cookie_changes_nothing() -> None:
    response = Response.text("hi")
    with pytest.raises(ValueError, match="invalid cookie value"):
        response.set_cookie("sid", "a;b")
    assert cookies_of(response) == []
    assert b"Set-Cookie" not in response.render(0, False)


def test_a_route_target_is_frozen_and_refuses_a_cookie() -> None:
    page = Response.text("welcome")
    App([("GET", "/", page)])
    assert page.frozen
    with pytest.raises(RuntimeError, match=r"with_cookie\(\.\.\.\) for a changed copy"):
        page.set_cookie("sid", "abc")
    with pytest.raises(RuntimeError, match=r"without_cookie"):
        page.delete_cookie("sid")
    assert cookies_of(page) == []
    assert cookies_of(page.with_cookie("sid", "abc")) == ["sid=abc; Path=/; SameSite=Lax"]


def test_freeze_is_for_shared_responses() -> None:
    shared = Response.text("denied", 403).freeze()
    with pytest.raises(RuntimeError, match="shared by many requests"):
        shared.set_cookie("a", "1")
    copy = shared.with_headers(())
    assert not copy.frozen
    copy.set_cookie("a", "1")
    assert cookies_of(copy) == ["a=1; Path=/; SameSite=Lax"]


async def test_the_flask_habit_sends_the_cookie(cyclehttp_server: ServerFactory) -> None:
    app = App()

    @app.get("/login")
    def login(request: Request) -> Response:
        response = Response.json({"logged_in": True})
        response.set_cookie("sid", "token123", httponly=True)
        return response

    @app.get("/logout")
    async def logout(request: Request) -> Response:
        response = Response.redirect("/", 303)
        response.delete_cookie("sid")
        return response

    server = await cyclehttp_server(app)
    async with await server.raw() as conn:
        await conn.send(b"GET /login HTTP/1.1\r\nHost: t\r\n\r\nGET /logout HTTP/1.1\r\nHost: t\r\n\r\n")
        login_answer, logout_answer = await conn.read_responses(2)
    assert login_answer.status == 200
    assert login_answer.header_all("set-cookie") == ["sid=token123; Path=/; HttpOnly; SameSite=Lax"]
    assert logout_answer.status == 303
    assert logout_answer.header_all("set-cookie")[0].startswith("sid=; Max-Age=0; Path=/")


async def test_an_after_hook_setting_a_cookie_on_a_shared_response_changes_a_copy(
    cyclehttp_server: ServerFactory,
) -> None:
    shared = Response.text("shared").freeze()
    app = App()
    app.add_route("GET", "/shared", lambda request: shared)
    app.add_route("GET", "/static", Response.text("static"))
    counter = iter(range(100))

    @app.after_request
    def stamp(request: Request, response: Response) -> None:
        response.set_cookie("visit", str(next(counter)))

    server = await cyclehttp_server(app)
    async with await server.raw() as conn:
        await conn.send(
            b"GET /shared HTTP/1.1\r\nHost: t\r\n\r\n" * 2 + b"GET /static HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first, second, static = await conn.read_responses(3)
    assert first.header_all("set-cookie") == ["visit=0; Path=/; SameSite=Lax"]
    assert second.header_all("set-cookie") == ["visit=1; Path=/; SameSite=Lax"]
    assert static.header_all("set-cookie") == []  # static routes never run hooks
    assert cookies_of(shared) == []

"""Bad input to the public API: the same documented exception in both builds.

The compiled build checks argument types at its functions' boundaries; where
cyclehttp validates an argument itself (and answers with ``ValueError`` or
``RouteError`` naming the problem), the compiled build must not answer first
with a bare ``TypeError``. This file runs in CI against the compiled and the
pure-Python build alike; ``cyclehttp.COMPILED`` says which one this is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import cyclehttp
from cyclehttp import App, Headers, HTTPError, QueryParams, Request, Response, RouteError
from cyclehttp.cycle.cookies import set_cookie_header


def refuse(exc: type[BaseException], match: str | None, call: Callable[[], Any]) -> None:
    with pytest.raises(exc, match=match) as caught:
        call()
    assert type(caught.value) is exc or issubclass(type(caught.value), exc)


# A None message: a TypeError for an argument of the wrong type, whose wording is the pure build's
# ("secure must be True or False") or, compiled, the boundary check's ("bool object expected").
BAD_INPUT: list[tuple[str, type[BaseException], str | None, Callable[[], Any]]] = [
    ("status as a str", ValueError, "unknown HTTP status '200'", lambda: Response(b"", status="200")),
    ("status None", ValueError, "unknown HTTP status None", lambda: Response(b"", status=None)),
    ("an unknown status", ValueError, "unknown HTTP status 299", lambda: Response(b"", status=299)),
    ("text with a str status", ValueError, "unknown HTTP status", lambda: Response.text("x", status="404")),
    ("json with a float status", ValueError, "unknown HTTP status", lambda: Response.json({}, status=200.0)),
    ("a body of the wrong type", TypeError, "body must be bytes or str", lambda: Response(5)),
    ("a body for a 204", ValueError, "cannot have a body", lambda: Response(b"x", status=204)),
    ("redirect to None", ValueError, "non-empty str", lambda: Response.redirect(None)),
    ("redirect to bytes", ValueError, "non-empty str", lambda: Response.redirect(b"/x")),
    ("redirect with a 200", ValueError, "301, 302, 303, 307 or 308", lambda: Response.redirect("/x", 200)),
    ("a header value with CRLF", ValueError, "CR, LF or NUL", lambda: Response(headers={"X": "a\r\nb"})),
    ("a header name with a space", ValueError, "invalid header name", lambda: Response(headers={"X Y": "1"})),
    ("a reserved header", ValueError, "set by the server", lambda: Response(headers={"Content-Length": "1"})),
    ("a cookie name not str", ValueError, "invalid cookie name", lambda: Response().set_cookie(5, "v")),
    ("a cookie value not str", ValueError, "invalid cookie value", lambda: Response().set_cookie("a", None)),
    ("a cookie value with ;", ValueError, "invalid cookie value", lambda: Response().set_cookie("a", "x;y")),
    ("samesite True", ValueError, "samesite must be", lambda: Response().set_cookie("a", "1", samesite=True)),
    (
        "samesite unknown",
        ValueError,
        "samesite must be",
        lambda: set_cookie_header("a", "1", samesite="sometimes"),
    ),
    (
        "secure not a bool",
        TypeError,
        None,
        lambda: Response().set_cookie("a", "1", secure=1),
    ),
    (
        "max_age not an int",
        TypeError,
        None,
        lambda: Response().set_cookie("a", "1", max_age=1.5),
    ),
    ("a stream of a str", TypeError, "iterator of chunks", lambda: Response.stream("text")),
    ("a stream of an int", TypeError, "async or sync iterable", lambda: Response.stream(5)),
    (
        "a stream with a str status",
        ValueError,
        "unknown HTTP status",
        lambda: Response.stream([b"x"], status="200"),
    ),
    (
        "a file that is missing",
        FileNotFoundError,
        "cyclehttp-file",
        lambda: Response.file("/nonexistent/cyclehttp-file"),
    ),
    ("a method as bytes", RouteError, "invalid HTTP method", lambda: App().add_route(b"GET", "/", "x")),
    ("a method as an int", RouteError, "invalid HTTP method", lambda: App().add_route(5, "/", "x")),
    (
        "a path as bytes",
        RouteError,
        "must be a str starting with '/'",
        lambda: App().add_route("GET", b"/", "x"),
    ),
    (
        "a path without /",
        RouteError,
        "must be a str starting with '/'",
        lambda: App().add_route("GET", "x", "x"),
    ),
    (
        "an unknown converter",
        RouteError,
        "unknown converter",
        lambda: App().add_route("GET", "/{a:nope}", "x"),
    ),
    (
        "a target that is no response",
        RouteError,
        "is not a Response or a handler",
        lambda: App([("GET", "/", 5)]),
    ),
    ("an HTTPError status of 200", ValueError, "from 400 to 599", lambda: HTTPError(200)),
    (
        "a stream_body sync handler",
        RouteError,
        "needs an async handler",
        lambda: App().add_route("POST", "/", lambda r: "x", stream_body=True),
    ),
]


@pytest.mark.parametrize(("what", "exc", "match", "call"), BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_raises_the_documented_exception(
    what: str, exc: type[BaseException], match: str | None, call: Callable[[], Any]
) -> None:
    refuse(exc, match, call)


def test_a_body_may_be_any_bytes_like() -> None:
    assert Response(bytearray(b"ab")).body == b"ab"
    assert Response(memoryview(b"cd")).body == b"cd"
    assert Response("é").body == "é".encode()


def test_query_over_the_limit_is_a_400() -> None:
    with pytest.raises(HTTPError) as caught:
        QueryParams(b"a=1&" * 5, max_pairs=3)
    assert caught.value.status == 400


def test_public_classes_can_be_subclassed() -> None:
    """Users subclass these (a compiled build allows it explicitly: mypyc_attr)."""

    class MyResponse(Response):
        def greeting(self) -> str:
            return self.body.decode()

    class MyHeaders(Headers):
        pass

    class MyQuery(QueryParams):
        pass

    class MyRequest(Request):
        @property
        def shout(self) -> str:
            return self.path.upper()

    assert MyResponse("hi").greeting() == "hi"
    assert MyHeaders([(b"X-A", b"1")])["x-a"] == "1"
    assert MyQuery(b"a=1").getall("a") == ["1"]
    assert MyRequest(b"GET", b"/abc", b"", [], b"", None, "1.1", None).shout == "/ABC"


def test_the_build_is_named() -> None:
    assert isinstance(cyclehttp.COMPILED, bool)
    assert ("compiled" if cyclehttp.COMPILED else "pure Python") == cyclehttp.version.BUILD

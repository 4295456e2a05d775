"""Unit tests of App: decorators, add_route, route lists and stats."""

from __future__ import annotations

from typing import Any

import pytest

from cyclehttp import App, Request, Response, RouteError
from cyclehttp.clock.stats import Stats
from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.router import NOT_FOUND_INDEX, Router
from cyclehttp.cycle.targets import HandlerTarget


def methods_of(app: App) -> list[tuple[str, str]]:
    return [(spec.method, spec.path) for spec in app.routes]


@pytest.mark.parametrize(
    ("decorator", "method"),
    [("get", "GET"), ("post", "POST"), ("put", "PUT"), ("patch", "PATCH"), ("delete", "DELETE")],
)
def test_method_decorators_register_and_return_original(decorator: str, method: str) -> None:
    app = App()

    def handler(request: Request) -> str:
        return "x"

    result = getattr(app, decorator)("/items/{id:int}")(handler)
    assert result is handler
    assert methods_of(app) == [(method, "/items/{id:int}")]
    target = app.routes[0].target
    assert isinstance(target, HandlerTarget)
    assert target.handler is handler


def test_route_decorator_with_methods() -> None:
    app = App()

    @app.route("/items", methods=["GET", "post"])
    async def items(request: Request) -> str:
        return "x"

    assert callable(items)
    assert methods_of(app) == [("GET", "/items"), ("POST", "/items")]
    targets = [spec.target for spec in app.routes]
    assert targets[0] is targets[1]
    assert isinstance(targets[0], HandlerTarget) and targets[0].is_async


def test_route_decorator_defaults_to_get() -> None:
    app = App()

    @app.route("/x")
    def x(request: Request) -> str:
        return "x"

    assert methods_of(app) == [("GET", "/x")]


def test_route_decorator_with_a_single_method_string() -> None:
    app = App()

    @app.route("/x", methods="POST")
    def x(request: Request) -> str:
        return "x"

    assert methods_of(app) == [("POST", "/x")]


def test_decorator_error_happens_at_declaration() -> None:
    app = App()
    with pytest.raises(RouteError, match="must accept exactly one positional argument"):

        @app.get("/x")
        def bad() -> str:
            return "x"

    with pytest.raises(RouteError, match="unknown converter"):

        @app.get("/x/{a:nope}")
        def bad2(request: Request) -> str:
            return "x"

    assert app.routes == ()


def test_add_route_with_list_of_methods() -> None:
    app = App()
    app.add_route(["GET", "PUT", "DELETE"], "/r", Response.text("r"))
    assert methods_of(app) == [("GET", "/r"), ("PUT", "/r"), ("DELETE", "/r")]
    app.add_route(("PATCH",), "/r", Response.text("p"))
    assert methods_of(app)[-1] == ("PATCH", "/r")


def test_add_route_is_all_or_nothing() -> None:
    app = App()
    app.add_route("PUT", "/r", "x")
    with pytest.raises(RouteError, match="duplicate route: PUT /r"):
        app.add_route(["GET", "PUT"], "/r", "y")
    assert methods_of(app) == [("PUT", "/r")]
    app.add_route("GET", "/r", "z")  # GET was not half-registered


def test_app_from_list_of_tuples() -> None:
    def echo(request: Request) -> bytes:
        return request.body

    app = App(
        [
            ("GET", "/", Response.text("hi")),
            (["POST", "PUT"], "/echo", echo),
            (("DELETE",), "/u/{id:int}", echo),
        ]
    )
    assert methods_of(app) == [("GET", "/"), ("POST", "/echo"), ("PUT", "/echo"), ("DELETE", "/u/{id:int}")]
    router = app.compile()
    assert isinstance(router, Router)
    index, params = router.lookup(b"DELETE", b"/u/9")
    assert params == {"id": 9}
    assert isinstance(router.targets[index], HandlerTarget)
    assert isinstance(router.targets[router.lookup(b"HEAD", b"/")[0]], PrerenderedResponse)
    assert router.lookup(b"GET", b"/zzz")[0] == NOT_FOUND_INDEX


def test_app_from_generator() -> None:
    app = App((m, f"/{m.lower()}", "x") for m in ("GET", "POST"))
    assert methods_of(app) == [("GET", "/get"), ("POST", "/post")]


@pytest.mark.parametrize(
    "bad",
    [
        ["GET", "/", "x"],
        ("GET", "/"),
        ("GET", "/", "x", "extra"),
        "GET / x",
        None,
        {"method": "GET"},
    ],
)
def test_bad_route_tuple(bad: Any) -> None:
    with pytest.raises(RouteError, match=r"must be a \(method, path, target\) tuple"):
        App([bad])


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (("GET", "no-slash", "x"), "starting with '/'"),
        ((None, "/x", "x"), "invalid HTTP method"),
        ((42, "/x", "x"), "invalid HTTP method"),
        (("GET", "/x", None), "is not a Response or a handler"),
        (("G ET", "/x", "x"), "invalid HTTP method"),
    ],
)
def test_bad_route_contents(route: Any, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        App([route])


def test_duplicate_in_route_list() -> None:
    with pytest.raises(RouteError, match="duplicate route: GET /x"):
        App([("GET", "/x", "a"), ("GET", "/x", "b")])


def test_compile_builds_fresh_router() -> None:
    app = App([("GET", "/", "x")])
    assert app.compile() is not app.compile()


def _serve_static(router: Router, path: bytes, times: int) -> None:
    """Count ``times`` responses of a static route, as the protocol does."""
    index, _ = router.lookup(b"GET", path)
    target = router.targets[index]
    assert isinstance(target, PrerenderedResponse)
    target.hits += times


def test_stats_snapshot_and_reset() -> None:
    app = App([("GET", "/", "hello")])
    snapshot = app.stats
    assert (snapshot.connections_accepted, snapshot.connections_open, snapshot.connections_closed) == (
        0,
        0,
        0,
    )
    assert snapshot.requests == 0

    live = Stats()
    router = app.compile()
    live.attach(router)
    app.attach_stats(live)  # what a starting Server does
    live.connections_accepted += 3
    _serve_static(router, b"/", 7)
    live.connection_closed(1_000_000)
    snapshot = app.stats
    assert snapshot.connections_accepted == 3
    assert snapshot.connections_open == 2
    assert snapshot.connections_closed == 1
    assert snapshot.requests == 7
    assert snapshot.requests_by_status["2xx"] == 7
    assert [(r.method, r.route, r.status, r.count) for r in snapshot.requests_by_route] == [
        ("GET", "/", "2xx", 7)
    ]
    # a snapshot is a copy, not a view
    _serve_static(router, b"/", 1)
    assert snapshot.requests == 7
    with pytest.raises(AttributeError):
        snapshot.requests = 0  # type: ignore[misc]

    app.reset_stats()
    after = app.stats
    assert after.requests == 0
    assert after.requests_by_route == ()
    assert after.connections_closed == 0
    assert after.connections_open == 2  # still open connections stay counted
    assert after.connections_accepted == 2


def test_stats_are_per_app() -> None:
    a, b = App([("GET", "/", "x")]), App([("GET", "/", "x")])
    live = Stats()
    router = a.compile()
    live.attach(router)
    a.attach_stats(live)
    _serve_static(router, b"/", 1)
    assert a.stats.requests == 1
    assert b.stats.requests == 0


def test_each_compiled_router_counts_for_itself() -> None:
    app = App([("GET", "/", "x")])
    first, second = app.compile(), app.compile()
    _serve_static(first, b"/", 2)
    stats = Stats()
    stats.attach(second)
    assert stats.snapshot().requests == 0


def test_metrics_path_must_be_a_path() -> None:
    with pytest.raises(RouteError, match="metrics_path"):
        App(metrics_path="metrics")

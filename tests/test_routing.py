"""Unit tests of the index router: compile_pattern, make_target and Router.lookup."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyclehttp import App, Request, Response, RouteError
from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.router import NOT_FOUND_INDEX, Router, compile_pattern
from cyclehttp.cycle.targets import HandlerTarget


def handler(request: Request) -> str:
    return "ok"


def make_router(*routes: tuple[Any, str, object]) -> Router:
    return App(list(routes)).compile()


def target_of(router: Router, method: bytes, path: bytes) -> tuple[object, dict[str, Any] | None]:
    index, params = router.lookup(method, path)
    return router.targets[index], params


def allow_of(router: Router, method: bytes, path: bytes) -> str:
    target, params = target_of(router, method, path)
    assert isinstance(target, PrerenderedResponse)
    assert target.status == 405
    assert params is None
    return dict(target.response.headers)["Allow"]


# --- static lookup ---------------------------------------------------------


def test_static_lookup_by_raw_bytes() -> None:
    hello = Response.text("hi")
    router = make_router(("GET", "/hello", hello), ("POST", "/hello", handler))
    target, params = target_of(router, b"GET", b"/hello")
    assert isinstance(target, PrerenderedResponse)
    assert target.response is hello
    assert params is None
    assert b"/hello" in router.exact
    post, _ = target_of(router, b"POST", b"/hello")
    assert isinstance(post, HandlerTarget)
    assert post.handler is handler


def test_unknown_path_is_not_found_index() -> None:
    router = make_router(("GET", "/hello", "hi"))
    assert router.lookup(b"GET", b"/nope") == (NOT_FOUND_INDEX, None)
    assert router.targets[NOT_FOUND_INDEX] is router.not_found
    assert router.not_found.status == 404


def test_trailing_slash_is_a_different_path() -> None:
    router = make_router(("GET", "/hello", "hi"))
    assert router.lookup(b"GET", b"/hello/")[0] == NOT_FOUND_INDEX


def test_percent_encoded_static_path() -> None:
    router = make_router(("GET", "/hello", "hi"), ("GET", "/a b", "space"))
    index, params = router.lookup(b"GET", b"/%68ello")
    assert index == router.lookup(b"GET", b"/hello")[0] != NOT_FOUND_INDEX
    assert params is None
    assert router.lookup(b"GET", b"/%68%65llo")[0] == index
    space = router.lookup(b"GET", b"/a%20b")[0]
    assert space != NOT_FOUND_INDEX
    assert router.lookup(b"GET", b"/a%20B")[0] == NOT_FOUND_INDEX


def test_non_ascii_static_route() -> None:
    router = make_router(("GET", "/café", "coffee"))
    upper = router.lookup(b"GET", b"/caf%C3%A9")[0]
    assert upper != NOT_FOUND_INDEX
    assert router.lookup(b"GET", b"/caf%c3%a9")[0] == upper


# --- parameters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/users/{name}", b"/users/alice", {"name": "alice"}),
        ("/users/{id:int}", b"/users/42", {"id": 42}),
        ("/price/{x:float}", b"/price/3.25", {"x": 3.25}),
        ("/price/{x:float}", b"/price/3", {"x": 3.0}),
        (
            "/things/{u:uuid}",
            b"/things/12345678-1234-5678-1234-567812345678",
            {"u": uuid.UUID("12345678-1234-5678-1234-567812345678")},
        ),
        ("/static/{rest:path}", b"/static/css/site.css", {"rest": "css/site.css"}),
        ("/files/{name}", b"/files/a%20b", {"name": "a b"}),
        ("/files/{name}", b"/files/caf%C3%A9", {"name": "café"}),
        ("/files/{name}", b"/files/a%2Fb", {"name": "a/b"}),
        ("/files/{name}", b"/files/100%25", {"name": "100%"}),
        ("/static/{rest:path}", b"/static/a%20b/c%3Fd", {"rest": "a b/c?d"}),
        ("/a/{x}/b/{y:int}", b"/a/one/b/2", {"x": "one", "y": 2}),
    ],
)
def test_param_conversion_and_decoding(pattern: str, path: bytes, expected: dict[str, Any]) -> None:
    router = make_router(("GET", pattern, handler))
    index, params = router.lookup(b"GET", path)
    target = router.targets[index]
    assert isinstance(target, HandlerTarget)
    assert params == expected
    assert all(type(params[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/users/{id:int}", b"/users/abc"),
        ("/users/{id:int}", b"/users/-1"),
        ("/users/{id:int}", b"/users/"),
        ("/users/{id:int}", b"/users/1/2"),
        ("/price/{x:float}", b"/price/1."),
        ("/price/{x:float}", b"/price/nan"),
        ("/things/{u:uuid}", b"/things/not-a-uuid"),
        ("/things/{u:uuid}", b"/things/12345678-1234-5678-1234-56781234567"),
        ("/users/{name}", b"/users/a/b"),
        ("/static/{rest:path}", b"/static/"),
    ],
)
def test_non_matching_converter_is_not_found(pattern: str, path: bytes) -> None:
    router = make_router(("GET", pattern, handler))
    assert router.lookup(b"GET", path) == (NOT_FOUND_INDEX, None)
    assert router.targets[NOT_FOUND_INDEX] is router.not_found


def test_percent_encoded_literal_of_a_dynamic_route() -> None:
    router = make_router(("GET", "/users/{id:int}", handler), ("GET", "/café/{id:int}", handler))
    plain = router.lookup(b"GET", b"/users/7")
    assert router.lookup(b"GET", b"/%75sers/7") == plain
    cafe = router.lookup(b"GET", b"/caf%C3%A9/7")
    assert cafe[1] == {"id": 7}
    assert router.lookup(b"GET", b"/caf%c3%a9/7") == cafe
    # an escaped digit is the digit: the converter sees the decoded text
    assert router.lookup(b"GET", b"/users/%37") == plain
    # an escaped slash stays inside its segment
    assert router.lookup(b"GET", b"/users/7%2F8") == (NOT_FOUND_INDEX, None)


@given(st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s))
def test_any_segment_round_trips_through_percent_encoding(segment: str) -> None:
    router = make_router(("GET", "/files/{name}", handler))
    raw = b"/files/" + quote(segment, safe="").encode("ascii")
    index, params = router.lookup(b"GET", raw)
    assert index != NOT_FOUND_INDEX
    assert params == {"name": segment}


@given(st.integers(min_value=0, max_value=10**30))
def test_any_int_param(value: int) -> None:
    router = make_router(("GET", "/n/{v:int}", handler))
    assert router.lookup(b"GET", b"/n/%d" % value)[1] == {"v": value}


# --- methods: 405, Allow, HEAD ------------------------------------------------


def test_405_carries_allow_with_head() -> None:
    router = make_router(("GET", "/x", "x"), ("POST", "/x", handler))
    assert allow_of(router, b"DELETE", b"/x") == "GET, HEAD, POST"
    target, _ = target_of(router, b"DELETE", b"/x")
    assert isinstance(target, PrerenderedResponse)
    assert b"Allow: GET, HEAD, POST\r\n" in target.buffers[0]


def test_405_without_get_has_no_head() -> None:
    router = make_router(("POST", "/x", handler), ("PUT", "/x", handler))
    assert allow_of(router, b"GET", b"/x") == "POST, PUT"
    assert allow_of(router, b"HEAD", b"/x") == "POST, PUT"


def test_405_on_dynamic_route() -> None:
    router = make_router(("GET", "/u/{id:int}", handler))
    assert allow_of(router, b"POST", b"/u/1") == "GET, HEAD"
    # a converter that does not match is a 404, not a 405
    assert router.lookup(b"POST", b"/u/x") == (NOT_FOUND_INDEX, None)


def test_head_maps_to_get() -> None:
    router = make_router(("GET", "/x", "x"), ("GET", "/u/{id:int}", handler))
    assert router.lookup(b"HEAD", b"/x") == router.lookup(b"GET", b"/x")
    assert router.lookup(b"HEAD", b"/u/3") == router.lookup(b"GET", b"/u/3")


def test_explicit_head_route_wins() -> None:
    def head(request: Request) -> Response:
        return Response()

    router = make_router(("GET", "/x", handler), ("HEAD", "/x", head))
    target, _ = target_of(router, b"HEAD", b"/x")
    assert isinstance(target, HandlerTarget) and target.handler is head
    get, _ = target_of(router, b"GET", b"/x")
    assert isinstance(get, HandlerTarget) and get.handler is handler
    # declared in the other order too
    router = make_router(("HEAD", "/x", head), ("GET", "/x", handler))
    target, _ = target_of(router, b"HEAD", b"/x")
    assert isinstance(target, HandlerTarget) and target.handler is head


def test_method_lookup_is_case_sensitive() -> None:
    router = make_router(("GET", "/x", "x"))
    assert allow_of(router, b"get", b"/x") == "GET, HEAD"


# --- precedence ---------------------------------------------------------------


def test_static_beats_param_regardless_of_order() -> None:
    def me(request: Request) -> str:
        return "me"

    router = make_router(("GET", "/users/{name}", handler), ("GET", "/users/me", me))
    target, params = target_of(router, b"GET", b"/users/me")
    assert isinstance(target, HandlerTarget) and target.handler is me
    assert params is None
    target, params = target_of(router, b"GET", b"/users/bob")
    assert isinstance(target, HandlerTarget) and target.handler is handler
    assert params == {"name": "bob"}


def test_param_routes_match_in_declaration_order() -> None:
    def first(request: Request) -> str:
        return "first"

    def second(request: Request) -> str:
        return "second"

    router = make_router(("GET", "/items/{id:int}", first), ("GET", "/items/{name}", second))
    target, params = target_of(router, b"GET", b"/items/5")
    assert isinstance(target, HandlerTarget) and target.handler is first
    assert params == {"id": 5}
    target, params = target_of(router, b"GET", b"/items/five")
    assert isinstance(target, HandlerTarget) and target.handler is second
    assert params == {"name": "five"}

    router = make_router(("GET", "/items/{name}", second), ("GET", "/items/{id:int}", first))
    target, params = target_of(router, b"GET", b"/items/5")
    assert isinstance(target, HandlerTarget) and target.handler is second
    assert params == {"name": "5"}


def test_later_param_route_serves_a_method_the_first_lacks() -> None:
    def post(request: Request) -> str:
        return "post"

    router = make_router(("GET", "/items/{id:int}", handler), ("POST", "/items/{name}", post))
    target, params = target_of(router, b"POST", b"/items/5")
    assert isinstance(target, HandlerTarget) and target.handler is post
    assert params == {"name": "5"}


def test_union_allow_when_two_param_patterns_match() -> None:
    router = make_router(("GET", "/items/{id:int}", handler), ("POST", "/items/{name}", handler))
    assert allow_of(router, b"DELETE", b"/items/5") == "GET, HEAD, POST"
    # only the str pattern matches a non-number
    assert allow_of(router, b"DELETE", b"/items/five") == "POST"
    # the combined 405 is built once and reused
    assert router.lookup(b"PUT", b"/items/5") == router.lookup(b"DELETE", b"/items/6")


def test_refresh_and_static_responses() -> None:
    router = make_router(("GET", "/x", "x"), ("GET", "/y", handler))
    statics = router.static_responses()
    assert router.not_found in statics
    assert all(isinstance(t, PrerenderedResponse) for t in statics)
    router.refresh()


# --- start-up errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("hello", "must be a str starting with '/'"),
        ("", "must be a str starting with '/'"),
        ("/u/{id:integer}", "unknown converter 'integer'"),
        ("/u/{1abc}", "parameter name '1abc' is not an identifier"),
        ("/u/{}", "parameter name '' is not an identifier"),
        ("/u/{a-b}", "is not an identifier"),
        ("/u/{id}/{id:int}", "parameter 'id' appears twice"),
        ("/u/{id", "unbalanced"),
        ("/u/id}", "unbalanced"),
        ("/u/{{id}}", "unbalanced"),
        ("/u?x=1", "cannot contain '?' or '#'"),
        ("/u/{id}?x", "cannot contain '?' or '#'"),
        ("/u#frag", "cannot contain '?' or '#'"),
    ],
)
def test_bad_path_raises_route_error(path: str, message: str) -> None:
    with pytest.raises(RouteError, match=None) as info:
        compile_pattern(path)
    assert message in str(info.value)
    assert repr(path) in str(info.value)
    with pytest.raises(RouteError):
        App().add_route("GET", path, handler)


def test_path_must_be_str() -> None:
    with pytest.raises(RouteError, match="must be a str"):
        compile_pattern(b"/x")  # type: ignore[arg-type]


def test_unknown_converter_lists_known_ones() -> None:
    with pytest.raises(RouteError, match="use one of str, int, float, uuid, path"):
        compile_pattern("/u/{id:number}")


def test_duplicate_route_same_method_and_path() -> None:
    app = App()
    app.add_route("GET", "/x", handler)
    with pytest.raises(RouteError, match="duplicate route: GET /x"):
        app.add_route("GET", "/x", "other")
    with pytest.raises(RouteError, match="duplicate route: GET /x"):
        app.add_route("get", "/x", "other")
    app.add_route("POST", "/x", handler)  # another method is fine


def test_duplicate_route_params_differing_only_in_name() -> None:
    app = App()
    app.add_route("GET", "/u/{id:int}", handler)
    with pytest.raises(RouteError, match=r"duplicate route: GET /u/\{uid:int\}.*/u/\{id:int\}"):
        app.add_route("GET", "/u/{uid:int}", handler)
    # a different converter is a different route
    app.add_route("GET", "/u/{name}", handler)


def test_duplicate_in_one_add_route_call() -> None:
    with pytest.raises(RouteError, match="duplicate route"):
        App().add_route(["GET", "get"], "/x", handler)


def test_router_rejects_duplicates_itself() -> None:
    app = App([("GET", "/u/{id:int}", handler)])
    specs = list(app.routes) + list(App([("GET", "/u/{other:int}", handler)]).routes)
    with pytest.raises(RouteError, match="duplicate route"):
        Router(specs)


@pytest.mark.parametrize("method", ["", "G ET", "GET\r\n", "1GET", "GET/", 42, None])
def test_bad_method(method: object) -> None:
    with pytest.raises(RouteError, match="invalid HTTP method"):
        App().add_route(method, "/x", handler)  # type: ignore[arg-type]


def test_no_methods() -> None:
    with pytest.raises(RouteError, match="no methods"):
        App().add_route([], "/x", handler)


def test_method_is_upper_cased() -> None:
    app = App([("post", "/x", handler)])
    assert app.routes[0].method == "POST"


def _two_args(request: Request, other: int) -> str:
    return "x"


def _no_args() -> str:
    return "x"


def _kw_only(*, request: Request) -> str:
    return "x"


@pytest.mark.parametrize("bad", [_two_args, _no_args, _kw_only, lambda: "x"])
def test_handler_that_cannot_take_one_positional_arg(bad: Any) -> None:
    with pytest.raises(RouteError, match="must accept exactly one positional argument") as info:
        App().add_route("GET", "/x", bad)
    assert "route GET /x" in str(info.value)


def test_handlers_that_can_take_one_positional_arg() -> None:
    async def async_handler(request: Request) -> str:
        return "x"

    def with_default(request: Request, extra: int = 1) -> str:
        return "x"

    def star_args(*args: Any) -> str:
        return "x"

    class Callable:
        def __call__(self, request: Request) -> str:
            return "x"

    class AsyncCallable:
        async def __call__(self, request: Request) -> str:
            return "x"

    app = App()
    app.add_route("GET", "/a", async_handler)
    app.add_route("GET", "/b", with_default)
    app.add_route("GET", "/c", star_args)
    app.add_route("GET", "/d", Callable())
    app.add_route("GET", "/e", AsyncCallable())
    targets = [spec.target for spec in app.routes]
    assert all(isinstance(t, HandlerTarget) for t in targets)
    assert [t.is_async for t in targets if isinstance(t, HandlerTarget)] == [True, False, False, False, True]
    assert "async handler" in repr(targets[0])


@pytest.mark.parametrize("bad", [None, 42, 3.5, object()])
def test_target_neither_response_nor_callable(bad: object) -> None:
    with pytest.raises(RouteError, match="is not a Response or a handler"):
        App().add_route("GET", "/x", bad)


def test_data_targets_become_static_responses() -> None:
    app = App(
        [("GET", "/s", "text"), ("GET", "/b", b"\x00\x01"), ("GET", "/d", {"a": 1}), ("GET", "/l", [1])]
    )
    kinds = {}
    for spec in app.routes:
        assert isinstance(spec.target, PrerenderedResponse)
        kinds[spec.path] = (spec.target.response.content_type, spec.target.body)
    assert kinds == {
        "/s": ("text/plain; charset=utf-8", b"text"),
        "/b": ("application/octet-stream", b"\x00\x01"),
        "/d": ("application/json", b'{"a":1}'),
        "/l": ("application/json", b"[1]"),
    }


def test_compiled_pattern_signature_erases_names() -> None:
    a = compile_pattern("/u/{id:int}/x/{name}")
    b = compile_pattern("/u/{other:int}/x/{n:str}")
    assert a.signature == b.signature
    assert compile_pattern("/static").regex is None
    assert compile_pattern("/static").raw == b"/static"
    assert compile_pattern("/a b").raw == b"/a%20b"

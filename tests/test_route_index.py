"""The segment index gives exactly the answers of the linear search it replaced.

``Router.lookup_pattern`` tries only the parameter routes ``RouteIndex`` leaves
for a path (past ``LINEAR_ROUTES`` routes). Hypothesis builds random route
tables and paths (literals, parameters of every converter, parameters inside a
segment, ``{name:path}``, percent-escapes, ``%2F``, empty segments) and compares
every lookup with the linear search over all routes in declaration order: the
same target (a route, its 405, a combined 405, or the 404) and the same
parameters.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cyclehttp import App, RouteError
from cyclehttp.cycle import router as router_module
from cyclehttp.cycle.route_index import RouteIndex
from cyclehttp.cycle.router import LINEAR_ROUTES, NOT_FOUND_INDEX, Router


def linear_lookup(router: Router, method: bytes, path: bytes) -> tuple[int, dict[str, Any] | None]:
    """The router's lookup as it was: every parameter route tried in declaration order."""
    entry = router.exact.get(path)
    if entry is not None:
        return entry.methods.get(method, entry.not_allowed), None
    escaped = b"%" in path
    if escaped:
        if router_module._ESCAPED_SLASH.search(path) is None:
            decoded = router_module._encode_path(router_module.unquote(path.decode("ascii", "replace")))
            entry = router.exact.get(decoded)
            if entry is not None:
                return entry.methods.get(method, entry.not_allowed), None
        path = router_module._normalize_path(path)
    matched = []
    for entry in router.dynamic:
        assert entry.regex is not None
        match = entry.regex.fullmatch(path)
        if match is None:
            continue
        params = router_module._convert(entry, match.groups(), escaped)
        if params is None:
            continue
        index = entry.methods.get(method)
        if index is not None:
            return index, params
        matched.append(entry)
    if not matched:
        return NOT_FOUND_INDEX, None
    if len(matched) == 1:
        return matched[0].not_allowed, None
    return router._union_405(matched), None


LITERALS = ["a", "b", "users", "x.txt", "v1", "caf\u00e9", "a b"]
CONVERTERS = ["", ":str", ":int", ":float", ":uuid"]
UUID = "123e4567-e89b-12d3-a456-426614174000"

literal = st.sampled_from(LITERALS)
parameter = st.builds(lambda c: "{" + c + "}", st.sampled_from(CONVERTERS))  # named later
mixed = st.builds(
    lambda c, suffix: "{" + c + "}" + suffix, st.sampled_from(CONVERTERS), st.sampled_from([".txt", "-x"])
)
segment = st.one_of(literal, parameter, mixed)


@st.composite
def route_paths(draw: st.DrawFn) -> str:
    segments = draw(st.lists(segment, min_size=1, max_size=4))
    if draw(st.booleans()) and draw(st.booleans()):
        segments.append("{:path}")
    if draw(st.integers(0, 9)) == 0:
        segments.append("")  # a trailing slash
    named = []
    for number, text in enumerate(segments):
        named.append(text.replace("{", f"{{p{number}", 1) if "{" in text else text)
    return "/" + "/".join(named)


request_segment = st.one_of(
    st.sampled_from(
        [*LITERALS, "", "7", "3.5", UUID, "x%2Fy", "%61", "caf%C3%A9", "a%20b", "7.txt", "7-x", "."]
    ),
    st.text(alphabet="abc0123456789.-%", min_size=1, max_size=5),
)


@st.composite
def request_paths(draw: st.DrawFn) -> bytes:
    segments = draw(st.lists(request_segment, min_size=1, max_size=6))
    text = "/" + "/".join(segments)
    return router_module._encode_path(text).replace(b"%25", b"%") if "%" in text else text.encode("utf-8")


def build(paths: list[str], methods: list[str]) -> Router | None:
    app = App()
    for path, method in zip(paths, methods, strict=False):
        with contextlib.suppress(RouteError):  # the same route twice: not a table
            app.add_route(method, path, lambda request: "x")
    return app.compile() if app.routes else None


VALUES = ["7", "3.5", UUID, "a", "x.txt", "7.txt", "7-x", "caf%C3%A9", "x%2Fy", "a/b", "", "%61"]


def filled(pattern: str, values: list[str]) -> bytes:
    """``pattern`` with each parameter replaced by the next of ``values``: a path that may match it."""
    pieces = re.split(r"\{[^{}]*\}", pattern)
    text = pieces[0]
    for number, piece in enumerate(pieces[1:]):
        text += values[number % len(values)] + piece
    return router_module._encode_path(text).replace(b"%25", b"%")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(route_paths(), min_size=1, max_size=40),
    st.lists(st.sampled_from(["GET", "POST", "PUT"]), min_size=40, max_size=40),
    st.lists(request_paths(), min_size=1, max_size=8),
    st.lists(st.lists(st.sampled_from(VALUES), min_size=1, max_size=4), min_size=1, max_size=8),
    st.sampled_from([b"GET", b"POST", b"DELETE", b"HEAD"]),
)
def test_the_index_answers_as_the_linear_search(
    paths: list[str], methods: list[str], requests: list[bytes], fills: list[list[str]], method: bytes
) -> None:
    router = build(paths, methods)
    if router is None:
        return
    # Random paths, and paths made from the routes themselves (most of which match one).
    made = [filled(paths[number % len(paths)], values) for number, values in enumerate(fills)]
    for path in [*requests, *made]:
        assert router.lookup(method, path) == linear_lookup(router, method, path), (path, paths)


def test_paths_made_from_routes_reach_them() -> None:
    """What the comparison above feeds: paths made from the routes mostly find a route (not 404s)."""
    patterns = ["/users/{p1:int}", "/a/{p1}.txt", "/v1/{p1:uuid}/{p2:path}", "/b/{p1:float}/x"]
    router = App([("GET", pattern, "x") for pattern in patterns]).compile()
    values = [["7"], ["x"], [UUID, "a/b"], ["3.5"]]
    for pattern, fill in zip(patterns, values, strict=True):
        index, params = router.lookup(b"GET", filled(pattern, fill))
        assert router.labels[index] == ("GET", pattern), pattern
        assert params


def test_a_large_table_uses_the_index_and_a_small_one_does_not() -> None:
    small = App([("GET", f"/r{i}/{{id:int}}", "x") for i in range(LINEAR_ROUTES)]).compile()
    large = App([("GET", f"/r{i}/{{id:int}}", "x") for i in range(LINEAR_ROUTES + 1)]).compile()
    assert small._index is None
    assert isinstance(large._index, RouteIndex)
    index, params = large.lookup(b"GET", b"/r8/42")
    assert large.labels[index] == ("GET", "/r8/{id:int}") and params == {"id": 42}


def test_declaration_order_wins_among_candidates() -> None:
    routes = [("GET", f"/filler{i}/{{x}}", "x") for i in range(20)]
    routes += [("GET", "/files/{name}", "first"), ("GET", "/files/{name}.txt", "second")]
    routes += [("GET", "/files/{rest:path}", "third"), ("POST", "/files/{n:int}", "post")]
    router = App(routes).compile()
    assert router.labels[router.lookup(b"GET", b"/files/a.txt")[0]] == ("GET", "/files/{name}")
    assert router.labels[router.lookup(b"GET", b"/files/a/b")[0]] == ("GET", "/files/{rest:path}")
    not_allowed, _ = router.lookup(b"DELETE", b"/files/7")
    assert router.labels[not_allowed][0] == "<other>"  # a 405 for the routes that match /files/7

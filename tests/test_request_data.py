"""Request and response data: strict query strings, JSON in and out (stdlib and orjson), redirects,
and header injection refused where a response is built."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyclehttp import App, HTTPError, QueryParams, Request, Response
from cyclehttp.cycle import request as request_module
from cyclehttp.cycle import wire as wire_module
from cyclehttp.cycle.mappings import MAX_QUERY_PAIRS
from cyclehttp.cycle.request import parse_json
from cyclehttp.cycle.wire import json_bytes

orjson = pytest.importorskip("orjson")


def make_request(
    query_string: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b""
) -> Request:
    return Request(b"POST", b"/", query_string, headers or [], body, None, "1.1", None)


@pytest.fixture(params=["orjson", "stdlib"])
def json_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with orjson, then again as if it were not installed."""
    if request.param == "stdlib":
        monkeypatch.setattr(request_module, "_orjson", None)
        monkeypatch.setattr(wire_module, "_orjson", None)
    return str(request.param)


# --- query --------------------------------------------------------------------


def test_query_multi_values_plus_and_percent() -> None:
    q = QueryParams(b"a=1&a=2&b=x+y%2Bz&c=caf%C3%A9&flag&&d=%3D%26")
    assert q["a"] == q.get("a") == "1"
    assert q.getall("a") == ["1", "2"]
    assert q["b"] == "x y+z"
    assert q["c"] == "café"
    assert q["flag"] == ""
    assert q["d"] == "=&"
    assert q.get("missing") is None and q.getall("missing") == []
    assert QueryParams("k=é")["k"] == "é"


@pytest.mark.parametrize(
    "query", [b"a=%", b"a=%2", b"a=%zz", b"%G0=1", b"a=1&b=100%", b"a=%C3", b"a=%FF", b"a=\xff"]
)
def test_invalid_percent_encoding_is_400(query: bytes) -> None:
    with pytest.raises(HTTPError) as info:
        make_request(query).query  # noqa: B018
    assert info.value.status == 400
    assert info.value.detail is not None and "query string" in info.value.detail


def test_too_many_query_pairs_is_400() -> None:
    at_limit = b"&".join(b"k%d=1" % i for i in range(MAX_QUERY_PAIRS))
    assert len(QueryParams(at_limit)) == MAX_QUERY_PAIRS
    assert len(QueryParams(at_limit + b"&&&")) == MAX_QUERY_PAIRS  # trailing separators are not pairs
    with pytest.raises(HTTPError) as info:
        QueryParams(at_limit + b"&x=1")
    assert info.value.status == 400 and str(MAX_QUERY_PAIRS) in str(info.value)
    with pytest.raises(HTTPError):
        QueryParams(b"a=1&b=2&c=3", max_pairs=2)


def test_a_huge_query_is_refused_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(HTTPError):
        QueryParams(b"a=1&" * 1_000_000)
    assert time.perf_counter() - start < 0.5


# --- JSON in ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"application/json",
        b"Application/JSON; charset=utf-8",
        b"application/problem+json",
        b"application/vnd.api+json",
    ],
)
def test_json_content_types_accepted(content_type: bytes | None, json_path: str) -> None:
    headers = [] if content_type is None else [(b"Content-Type", content_type)]
    assert make_request(headers=headers, body=b'{"a": [1, 2.5, null]}').json() == {"a": [1, 2.5, None]}


@pytest.mark.parametrize(
    "content_type",
    [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", b"", b"json"],
)
def test_json_wrong_content_type_is_415(content_type: bytes) -> None:
    with pytest.raises(HTTPError) as info:
        make_request(headers=[(b"content-type", content_type)], body=b"{}").json()
    assert info.value.status == 415
    assert info.value.detail is not None and "application/json" in info.value.detail


@pytest.mark.parametrize(
    ("body", "where"),
    [(b'{"a": 1,}', "line 1 column 9"), (b'{\n  "a": tru\n}', "line 2 column 8"), (b"", "line 1 column 1")],
)
def test_invalid_json_says_where(body: bytes, where: str, json_path: str) -> None:
    with pytest.raises(HTTPError) as info:
        make_request(body=body).json()
    assert info.value.status == 400
    assert info.value.detail is not None and where in info.value.detail


def test_deeply_nested_json_is_400_on_the_stdlib_path(json_path: str) -> None:
    """The stdlib's recursion limit is a 400, not a 500.

    orjson before 3.9 parses any depth; later versions refuse deep nesting, and the
    stdlib then answers 400 (documented). Either way, never a 500.
    """
    request = make_request(body=b"[" * 100_000 + b"]" * 100_000)
    try:
        parsed = request.json()
    except HTTPError as exc:
        assert exc.status == 400 and "nested too deeply" in str(exc)
    else:
        assert json_path == "orjson" and isinstance(parsed, list)


@pytest.mark.parametrize(
    "body",
    [
        b"123456789012345678901234567890",
        b"[-99999999999999999999]",
        b"NaN",
        b"[Infinity, -Infinity]",
        b'"\\ud800"',
        b"1e400",
        '{"x": "é"}'.encode("utf-16"),
        b'{"a": 1, "a": 2}',
        b"0.1",
        b"-0.0",
    ],
)
def test_parse_json_same_values_both_paths(body: bytes) -> None:
    expected = json.loads(body)
    got = parse_json(body)
    assert type(got) is type(expected)
    assert repr(got) == repr(expected)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=500)
@given(json_values)
def test_orjson_and_stdlib_give_the_same_bytes(value: Any) -> None:
    with_orjson = json_bytes(value)
    saved = wire_module._orjson
    wire_module._orjson = None
    try:
        without = json_bytes(value)
    finally:
        wire_module._orjson = saved
    assert with_orjson == without


@settings(max_examples=300)
@given(json_values.filter(lambda v: "NaN" not in repr(v) and "inf" not in repr(v)))
def test_orjson_and_stdlib_parse_the_same(value: Any) -> None:
    body = json.dumps(value).encode("utf-8", "surrogatepass")
    assert repr(parse_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize(
    "value",
    [
        {1: "int key"},
        {"big": 2**64},
        [-(2**70)],
        [math.nan, math.inf, -math.inf],
        [1e16, 1e-5, 1.5e300],
        "\ud800",
        {"a": None},
    ],
)
def test_values_orjson_refuses_or_writes_differently_use_the_stdlib(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if value == "\ud800":
        with pytest.raises(UnicodeEncodeError):
            json_bytes(value)
        return
    assert json_bytes(value) == expected


def test_unknown_types_still_raise_type_error(json_path: str) -> None:
    import datetime

    for value in (object(), {"when": datetime.datetime(2020, 1, 1)}, {1, 2}):
        with pytest.raises(TypeError):
            json_bytes(value)


# --- redirects and injection --------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect(status: int) -> None:
    response = Response.redirect("/next?a=1", status)
    assert (response.status, response.body) == (status, b"")
    assert ("Location", "/next?a=1") in response.headers
    assert Response.redirect("https://example.com/").status == 307


@pytest.mark.parametrize("status", [200, 300, 304, 305, 404, 399])
def test_redirect_other_statuses_refused(status: int) -> None:
    with pytest.raises(ValueError, match="redirect status"):
        Response.redirect("/", status)


@pytest.mark.parametrize("url", ["/a\r\nSet-Cookie: x=1", "/a\nb", "/a\rb", "/\x00", "", "/€"])
def test_redirect_refuses_injection(url: str) -> None:
    with pytest.raises(ValueError):
        Response.redirect(url)


@pytest.mark.parametrize("bad", ["x\r\nSet-Cookie: a=1", "x\ny", "x\rz", "\x00"])
def test_header_injection_raises_at_construction(bad: str) -> None:
    for build in (
        lambda: Response("b", headers={"X-A": bad}),
        lambda: Response("b", headers=[("X-A", "ok"), ("X-A", bad)]),
        lambda: Response.text("b", headers={"X-A": bad}),
        lambda: Response.html("b", headers={"X-A": bad}),
        lambda: Response.json({}, headers={"X-A": bad}),
        lambda: Response("b", content_type="text/plain" + bad),
        lambda: Response.text("b").with_headers({"X-A": bad}),
        lambda: Response.redirect("/", 303, headers={"X-A": bad}),
        lambda: Response("b", headers={"X-A" + bad: "1"}),
    ):
        with pytest.raises(ValueError):
            build()


# --- over real sockets --------------------------------------------------------


def echo_json(request: Request) -> Response:
    return Response.json(request.json())


def query(request: Request) -> dict[str, list[str]]:
    return {key: request.query.getall(key) for key in request.query}


def go(request: Request) -> Response:
    return Response.redirect("/target?from=go", int(request.query.get("status", "307")))


def values(request: Request) -> list[Any]:
    return [1, 2.5, 1e16, 1e-7, None, "é", {"k": [True, False]}, 2**70]


DATA_APP = App(
    [("POST", "/json", echo_json), ("GET", "/query", query), ("GET", "/go", go), ("GET", "/values", values)]
)


async def test_json_round_trip_and_errors(cyclehttp_server, json_path: str) -> None:
    server = await cyclehttp_server(DATA_APP)
    async with httpx.AsyncClient(base_url=server.url) as client:
        ok = await client.post("/json", json={"a": [1, "é", None]})
        assert (ok.status_code, ok.json(), ok.headers["content-type"]) == (
            200,
            {"a": [1, "é", None]},
            "application/json",
        )
        bad = await client.post("/json", content=b'{"a": }', headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "line 1 column 7" in bad.text
        wrong = await client.post("/json", content=b"{}", headers={"content-type": "text/plain"})
        assert wrong.status_code == 415
        form = await client.post("/json", data={"a": "1"})
        assert form.status_code == 415
        bare = await client.post("/json", content=b"[1]")  # no Content-Type: accepted
        assert (bare.status_code, bare.json()) == (200, [1])


async def test_result_bytes_identical_with_and_without_orjson(
    cyclehttp_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await cyclehttp_server(DATA_APP)
    async with httpx.AsyncClient(base_url=server.url) as client:
        with_orjson = (await client.get("/values")).content
        monkeypatch.setattr(wire_module, "_orjson", None)
        without = (await client.get("/values")).content
    assert (
        with_orjson
        == without
        == b'[1,2.5,1e+16,1e-07,null,"\xc3\xa9",{"k":[true,false]},1180591620717411303424]'
    )


async def test_query_over_the_wire(cyclehttp_server) -> None:
    server = await cyclehttp_server(DATA_APP)
    async with await server.raw() as connection:
        await connection.send(b"GET /query?a=1&a=x+y&b=%C3%A9 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await connection.read_response()).json() == {"a": ["1", "x y"], "b": ["é"]}
        await connection.send(b"GET /query?a=%zz HTTP/1.1\r\nHost: t\r\n\r\n")
        bad = await connection.read_response()
        assert bad.status == 400 and b"percent-encoding" in bad.body
        many = b"&".join(b"k%d=" % i for i in range(MAX_QUERY_PAIRS + 1))
        await connection.send(b"GET /query?" + many + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        too_many = await connection.read_response()
        assert too_many.status == 400 and b"Too many query parameters" in too_many.body
        await connection.send(b"GET /query?ok=1 HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection still serves
        assert (await connection.read_response()).json() == {"ok": ["1"]}


async def test_query_and_cookie_pair_limits_are_server_options(cyclehttp_server) -> None:
    def cookies(request: Request) -> dict[str, str]:
        return request.cookies

    app = App([("GET", "/query", query), ("GET", "/cookies", cookies)])
    server = await cyclehttp_server(app, max_query_pairs=3, max_cookie_pairs=2)
    async with await server.raw() as connection:
        await connection.send(b"GET /query?a=1&b=2&c=3 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await connection.read_response()).json() == {"a": ["1"], "b": ["2"], "c": ["3"]}
        await connection.send(b"GET /query?a=1&b=2&c=3&d=4 HTTP/1.1\r\nHost: t\r\n\r\n")
        over = await connection.read_response()
        assert over.status == 400 and b"more than 3" in over.body
        await connection.send(b"GET /cookies HTTP/1.1\r\nHost: t\r\nCookie: a=1; b=2; c=3\r\n\r\n")
        assert (await connection.read_response()).json() == {"a": "1", "b": "2"}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_over_the_wire(cyclehttp_server, status: int) -> None:
    server = await cyclehttp_server(DATA_APP)
    async with await server.raw() as connection:
        await connection.send(b"GET /go?status=%d HTTP/1.1\r\nHost: t\r\n\r\n" % status)
        response = await connection.read_response()
    assert response.status == status
    assert response.header("location") == "/target?from=go"
    assert response.header("content-length") == "0"

"""Unit tests of Request, Headers and QueryParams."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyclehttp import Headers, HTTPError, QueryParams, Request
from cyclehttp.cycle.context import ConnectionContext


def make_request(
    method: bytes = b"GET",
    raw_path: bytes = b"/",
    query_string: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    params: dict[str, Any] | None = None,
    transport: Any = None,
) -> Request:
    context = None if transport is None else ConnectionContext(transport)
    return Request(method, raw_path, query_string, headers or [], body, params, "1.1", context)


class FakeTransport:
    def __init__(self, peer: object) -> None:
        self.peer = peer
        self.calls = 0

    def get_extra_info(self, name: str) -> object:
        assert name == "peername"
        self.calls += 1
        return self.peer


# --- Headers ------------------------------------------------------------------


RAW_HEADERS = [
    (b"Host", b"example.com"),
    (b"X-Multi", b"one"),
    (b"Content-Type", b"text/plain"),
    (b"x-multi", b"two"),
    (b"X-Latin", b"caf\xe9"),
]


def test_headers_case_insensitive() -> None:
    h = Headers(RAW_HEADERS)
    assert h["host"] == h["HOST"] == h["Host"] == "example.com"
    assert h.get("CONTENT-type") == "text/plain"
    assert "content-TYPE" in h
    assert "missing" not in h
    assert 42 not in h
    assert h.get("missing") is None
    with pytest.raises(KeyError):
        h["missing"]


def test_headers_getall_and_first_value() -> None:
    h = Headers(RAW_HEADERS)
    assert h["x-multi"] == "one"
    assert h.getall("X-MULTI") == ["one", "two"]
    assert h.getall("missing") == []
    assert h.getall("missing", ["d"]) == ["d"]
    # getall returns a copy
    h.getall("x-multi").append("three")
    assert h.getall("x-multi") == ["one", "two"]


def test_headers_multi_items_keep_order_and_repeats() -> None:
    h = Headers(RAW_HEADERS)
    assert h.multi_items() == [
        ("Host", "example.com"),
        ("X-Multi", "one"),
        ("Content-Type", "text/plain"),
        ("x-multi", "two"),
        ("X-Latin", "café"),
    ]


def test_headers_iteration_lower_cased() -> None:
    h = Headers(RAW_HEADERS)
    assert list(h) == ["host", "x-multi", "content-type", "x-latin"]
    assert len(h) == 4
    assert dict(h) == {
        "host": "example.com",
        "x-multi": "one",
        "content-type": "text/plain",
        "x-latin": "café",
    }
    assert "Headers(" in repr(h)


def test_headers_values_are_latin1() -> None:
    assert Headers([(b"X", b"\xff\xe9")])["x"] == "\xff\xe9"


def test_empty_headers() -> None:
    h = Headers([])
    assert len(h) == 0
    assert list(h) == []


@given(
    st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True), st.binary(max_size=10)))
)
def test_headers_getall_matches_case_folded_pairs(raw_names: list[tuple[str, bytes]]) -> None:
    raw = [(n.encode("ascii"), v) for n, v in raw_names]
    h = Headers(raw)
    for name, _ in raw_names:
        expected = [v.decode("latin-1") for n, v in raw_names if n.lower() == name.lower()]
        assert h.getall(name.upper()) == expected
        assert h[name.swapcase()] == expected[0]


# --- QueryParams --------------------------------------------------------------


def test_query_params_repeats_plus_and_percent() -> None:
    q = QueryParams(b"a=1&a=2&b=+x%20y")
    assert q.getall("a") == ["1", "2"]
    assert q["a"] == "1"
    assert q["b"] == " x y"
    assert list(q) == ["a", "b"]
    assert q.multi_items() == [("a", "1"), ("a", "2"), ("b", " x y")]


def test_query_params_blank_values_kept() -> None:
    q = QueryParams("empty=&flag&x=1")
    assert q["empty"] == ""
    assert q["flag"] == ""
    assert q["x"] == "1"


def test_query_params_case_sensitive() -> None:
    q = QueryParams(b"A=1&a=2")
    assert q["A"] == "1"
    assert q["a"] == "2"
    assert "B" not in q


def test_query_params_utf8_escapes() -> None:
    assert QueryParams(b"name=caf%C3%A9")["name"] == "café"


def test_query_params_empty() -> None:
    q = QueryParams(b"")
    assert len(q) == 0
    assert q.getall("a") == []


@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=8))
def test_query_params_round_trip(pairs: list[tuple[str, str]]) -> None:
    q = QueryParams(urlencode(pairs).encode("ascii"))
    assert q.multi_items() == pairs
    for key, _ in pairs:
        assert q.getall(key) == [v for k, v in pairs if k == key]


# --- Request ------------------------------------------------------------------


def test_request_basic_attributes() -> None:
    r = make_request(b"POST", b"/x", b"a=1", [(b"Host", b"h")], b"body", {"id": 1})
    assert r.method == "POST"
    assert r.raw_path == b"/x"
    assert r.body == b"body"
    assert r.params == {"id": 1}
    assert r.http_version == "1.1"
    assert r.query["a"] == "1"
    assert r.headers["host"] == "h"
    assert repr(r) == "<Request POST /x>"


def test_request_uncommon_method() -> None:
    assert make_request(b"PROPFIND").method == "PROPFIND"


def test_request_params_default_empty() -> None:
    assert make_request().params == {}


def test_request_lazy_values_are_cached() -> None:
    r = make_request(raw_path=b"/a%20b", query_string=b"a=1", headers=[(b"A", b"1")])
    assert r.path is r.path
    assert r.query is r.query
    assert r.headers is r.headers


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/files/a%20b", "/files/a b"),
        (b"/caf%C3%A9", "/café"),
        (b"/a%2Fb", "/a/b"),
        (b"/plain", "/plain"),
        (b"/100%25", "/100%"),
        (b"/a+b", "/a+b"),
    ],
)
def test_request_path_percent_decoded(raw: bytes, path: str) -> None:
    assert make_request(raw_path=raw).path == path


@given(st.text(min_size=1, max_size=20))
def test_request_path_round_trip(text: str) -> None:
    raw = ("/" + quote(text, safe="")).encode("ascii")
    assert make_request(raw_path=raw).path == "/" + text


def test_request_json() -> None:
    assert make_request(body=b'{"a": [1, 2]}').json() == {"a": [1, 2]}
    assert make_request(body='"é"'.encode()).json() == "é"
    assert make_request(body='{"x": 1}'.encode("utf-16")).json() == {"x": 1}


@pytest.mark.parametrize("body", [b"", b"{", b"{'a': 1}", b"\xff\xfe\xfd", b"[1,]"])
def test_request_invalid_json_is_400(body: bytes) -> None:
    with pytest.raises(HTTPError) as info:
        make_request(body=body).json()
    assert info.value.status == 400
    assert info.value.detail is not None
    assert info.value.detail.startswith("Invalid JSON body:")
    assert info.value.__cause__ is None


def test_request_text() -> None:
    assert make_request(body="héllo".encode()).text() == "héllo"
    assert make_request(body="héllo".encode("latin-1")).text("latin-1") == "héllo"
    with pytest.raises(HTTPError) as info:
        make_request(body=b"\xff").text()
    assert info.value.status == 400
    assert "utf-8" in str(info.value)


def test_client_without_transport_is_none() -> None:
    assert make_request().client is None


def test_client_from_transport() -> None:
    transport = FakeTransport(("127.0.0.1", 5555))
    r = make_request(transport=transport)
    assert r.client == ("127.0.0.1", 5555)
    assert r.client == ("127.0.0.1", 5555)
    assert transport.calls == 1


def test_client_ipv6_and_unix() -> None:
    assert make_request(transport=FakeTransport(("::1", 80, 0, 0))).client == ("::1", 80)
    assert make_request(transport=FakeTransport("/tmp/sock")).client is None
    assert make_request(transport=FakeTransport(None)).client is None

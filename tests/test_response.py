"""Unit tests of Response, PrerenderedResponse, render_result and HTTPError."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyclehttp import HTTPError, Response
from cyclehttp.cycle import response as response_module
from cyclehttp.cycle.prerendered import SPLIT_BODY_THRESHOLD, PrerenderedResponse
from cyclehttp.cycle.response import error_response, render_result
from cyclehttp.cycle.wire import CLOSE, DATE, KEEP_ALIVE, KEEP_ALIVE_HTTP10

DATE_RE = rb"Date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n"
CONNECTION = {
    KEEP_ALIVE: b"",
    CLOSE: b"Connection: close\r\n",
    KEEP_ALIVE_HTTP10: b"Connection: keep-alive\r\n",
}


@pytest.fixture
def fixed_date() -> Iterator[bytes]:
    """Pin DATE.line so rendered bytes can be compared exactly."""
    saved = DATE.line
    DATE.line = b"Date: Tue, 01 Jan 2030 00:00:00 GMT\r\n"
    try:
        yield DATE.line
    finally:
        DATE.line = saved


# --- building ---------------------------------------------------------------


def test_str_body_is_text_plain_utf8() -> None:
    r = Response("héllo")
    assert r.body == "héllo".encode()
    assert r.content_type == "text/plain; charset=utf-8"
    assert r.headers == (("Content-Type", "text/plain; charset=utf-8"),)
    assert r.status == 200


def test_bytes_body_has_no_default_content_type() -> None:
    r = Response(b"raw")
    assert r.content_type is None
    assert r.headers == ()


def test_bytearray_and_memoryview_bodies() -> None:
    assert Response(bytearray(b"ab")).body == b"ab"
    assert Response(memoryview(b"cd")).body == b"cd"


def test_body_of_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"bytes or str.*Response.json"):
        Response({"a": 1})  # type: ignore[arg-type]


def test_constructors() -> None:
    assert Response.text("x", 201).headers == (("Content-Type", "text/plain; charset=utf-8"),)
    assert Response.text("x", 201).status == 201
    assert Response.html("<p>").content_type == "text/html; charset=utf-8"
    j = Response.json({"a": [1, 2], "b": "é"})
    assert j.body == '{"a":[1,2],"b":"é"}'.encode()
    assert j.content_type == "application/json"
    assert json.loads(j.body) == {"a": [1, 2], "b": "é"}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_json_is_compact_and_round_trips(value: object) -> None:
    body = Response.json(value).body
    assert json.loads(body) == value
    assert body == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if isinstance(value, (dict, list)):  # a handler's dict or list result is the same JSON
        assert render_result(value, KEEP_ALIVE, False).endswith(b"\r\n\r\n" + body)


def test_json_of_a_value_it_cannot_encode_raises_and_leaves_the_encoder_usable() -> None:
    shared = {"shared": [1, 2]}
    circular: dict[str, object] = {"shared": shared}
    circular["self"] = circular
    with pytest.raises(TypeError, match="not JSON serializable"):
        Response.json({"shared": shared, "bad": object()})
    with pytest.raises(RecursionError):
        Response.json(circular)
    # Nothing of the failed calls is remembered: the same objects encode again.
    expected = b'{"again":{"shared":[1,2]},"twice":{"shared":[1,2]}}'
    assert Response.json({"again": shared, "twice": shared}).body == expected
    assert Response.json([float("inf"), -0.0, 1e300]).body == b"[Infinity,-0.0,1e+300]"


def test_headers_from_mapping_and_pairs() -> None:
    r = Response(b"", headers={"X-A": "1", "X-B": "2"})
    assert r.headers == (("X-A", "1"), ("X-B", "2"))
    r = Response(b"", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    assert r.headers == (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))


def test_content_type_header_is_not_duplicated() -> None:
    r = Response("<b>", headers={"Content-Type": "text/html"})
    assert r.headers == (("Content-Type", "text/html"),)
    assert r.content_type == "text/html"
    r = Response.json({}, headers=[("content-type", "application/problem+json")])
    assert r.headers == (("content-type", "application/problem+json"),)
    with_block = r.render(KEEP_ALIVE, False)
    assert with_block.lower().count(b"content-type:") == 1


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nX-Injected: 1", "a\x00b"])
def test_header_value_with_cr_lf_nul(value: str) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        Response(b"", headers={"X-Test": value})


@pytest.mark.parametrize("name", ["", "X Test", "X:Test", "X\r\nY", "Tést", "X(1)", "X/Y"])
def test_bad_header_name(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        Response(b"", headers={name: "v"})


@pytest.mark.parametrize(
    "name", ["Content-Length", "content-length", "Date", "Connection", "Transfer-Encoding", "DATE"]
)
def test_reserved_headers(name: str) -> None:
    with pytest.raises(ValueError, match="set by the server"):
        Response(b"", headers={name: "1"})


def test_content_type_argument_is_validated() -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        Response(b"", content_type="text/plain\r\nX: y")


@pytest.mark.parametrize("status", [204, 304, 100])
def test_bodyless_status_refuses_body(status: int) -> None:
    with pytest.raises(ValueError, match=f"a {status} response cannot have a body"):
        Response(b"x", status)
    Response(b"", status)  # an empty body is fine


@pytest.mark.parametrize("status", [0, 99, 600, 999, 1000])
def test_unknown_status(status: int) -> None:
    with pytest.raises(ValueError, match="unknown HTTP status"):
        Response(b"", status)


def test_repr() -> None:
    assert repr(Response(b"abc", 201)) == "<Response 201 3 bytes>"


# --- render -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [KEEP_ALIVE, CLOSE, KEEP_ALIVE_HTTP10])
def test_render_exact_bytes(fixed_date: bytes, mode: int) -> None:
    r = Response.text("Hello", headers={"X-A": "1"})
    expected = (
        b"HTTP/1.1 200 OK\r\n"
        + fixed_date
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + b"X-A: 1\r\n"
        + b"Content-Length: 5\r\n"
        + CONNECTION[mode]
        + b"\r\n"
    )
    assert r.render(mode, False) == expected + b"Hello"
    assert r.render(mode, True) == expected


def test_render_with_real_date() -> None:
    wire = Response(b"x", 404).render(KEEP_ALIVE, False)
    assert re.fullmatch(rb"HTTP/1\.1 404 Not Found\r\n" + DATE_RE + rb"Content-Length: 1\r\n\r\nx", wire)


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("head", [False, True])
def test_render_bodyless_status_has_no_content_length(fixed_date: bytes, status: int, head: bool) -> None:
    r = Response(b"", status, headers={"ETag": '"v1"'})
    phrase = b"No Content" if status == 204 else b"Not Modified"
    assert r.render(CLOSE, head) == (
        b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        + fixed_date
        + b'ETag: "v1"\r\n'
        + b"Connection: close\r\n\r\n"
    )


def test_render_empty_200_has_content_length_zero(fixed_date: bytes) -> None:
    assert (
        Response().render(KEEP_ALIVE, False)
        == b"HTTP/1.1 200 OK\r\n" + fixed_date + b"Content-Length: 0\r\n\r\n"
    )


# --- PrerenderedResponse ---------------------------------------------------------


def test_static_response_buffers_for_every_mode(fixed_date: bytes) -> None:
    r = Response.text("Hello")
    s = PrerenderedResponse(r)
    assert not s.split
    assert s.status == 200
    # The rendered message is the Response plus its ETag (tests/test_conditional_static.py).
    assert s.message.headers == (*r.headers, ("ETag", s.etag.decode() if s.etag else ""))
    for mode in (KEEP_ALIVE, CLOSE, KEEP_ALIVE_HTTP10):
        assert s.buffers[mode] == s.message.render(mode, False)
        assert s.head_buffers[mode] == s.message.render(mode, True)
        assert s.buffers[mode].endswith(b"\r\n\r\nHello")
        assert CONNECTION[mode] in s.head_buffers[mode]
    assert repr(s) == "<PrerenderedResponse 200 5 bytes>"


def test_static_response_at_threshold_is_not_split() -> None:
    s = PrerenderedResponse(Response(b"a" * SPLIT_BODY_THRESHOLD))
    assert not s.split
    assert s.buffers[KEEP_ALIVE].endswith(b"a" * SPLIT_BODY_THRESHOLD)


def test_static_response_splits_large_bodies(fixed_date: bytes) -> None:
    body = b"b" * (SPLIT_BODY_THRESHOLD + 1)
    r = Response(body)
    s = PrerenderedResponse(r)
    assert s.split
    assert s.body is r.body
    for mode in (KEEP_ALIVE, CLOSE, KEEP_ALIVE_HTTP10):
        assert s.buffers[mode] == s.head_buffers[mode] == s.message.render(mode, True)
        assert s.buffers[mode] + s.body == s.message.render(mode, False)
        assert b"Content-Length: %d\r\n" % len(body) in s.buffers[mode]


def test_static_response_refresh_picks_up_new_date(fixed_date: bytes) -> None:
    s = PrerenderedResponse(Response.text("x"))
    assert fixed_date in s.buffers[CLOSE]
    DATE.line = b"Date: Wed, 02 Jan 2030 00:00:01 GMT\r\n"
    assert fixed_date in s.buffers[CLOSE]  # not re-rendered until refresh()
    s.refresh()
    for buffers in (s.buffers, s.head_buffers):
        for buffer in buffers:
            assert b"Date: Wed, 02 Jan 2030 00:00:01 GMT\r\n" in buffer
            assert fixed_date not in buffer


def test_date_clock_refresh(fixed_date: bytes) -> None:
    assert DATE.refresh() is True
    assert re.fullmatch(DATE_RE, DATE.line)
    assert DATE.refresh() in (False, True)  # True only if the second just changed


# --- render_result ----------------------------------------------------------


def test_render_result_response(fixed_date: bytes) -> None:
    r = Response(b"x", 201, headers={"X-A": "1"})
    assert render_result(r, CLOSE, False) == r.render(CLOSE, False)
    assert render_result(r, CLOSE, True) == r.render(CLOSE, True)


@pytest.mark.parametrize(
    ("result", "content_type", "body"),
    [
        ({"a": 1, "b": [1, 2]}, b"application/json", b'{"a":1,"b":[1,2]}'),
        ([1, "é"], b"application/json", '[1,"é"]'.encode()),
        ("héllo", b"text/plain; charset=utf-8", "héllo".encode()),
        (b"\x00\xff", b"application/octet-stream", b"\x00\xff"),
        (bytearray(b"ba"), b"application/octet-stream", b"ba"),
        (memoryview(b"mv"), b"application/octet-stream", b"mv"),
    ],
)
@pytest.mark.parametrize("mode", [KEEP_ALIVE, CLOSE, KEEP_ALIVE_HTTP10])
def test_render_result_data(
    fixed_date: bytes, result: object, content_type: bytes, body: bytes, mode: int
) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\n"
        + fixed_date
        + b"Content-Type: "
        + content_type
        + b"\r\n"
        + b"Content-Length: %d\r\n" % len(body)
        + CONNECTION[mode]
        + b"\r\n"
    )
    assert render_result(result, mode, False) == head + body
    assert render_result(result, mode, True) == head


@pytest.mark.parametrize("result", [None, 42, 1.5, (1, 2), {1, 2}, object()])
def test_render_result_type_error(result: object) -> None:
    with pytest.raises(TypeError) as info:
        render_result(result, KEEP_ALIVE, False)
    message = str(info.value)
    assert type(result).__name__ in message
    for accepted in ("Response", "bytes", "str", "dict", "list"):
        assert accepted in message


# --- error_response and HTTPError ---------------------------------------------


def test_error_response() -> None:
    r = error_response(404)
    assert (r.status, r.body, r.content_type) == (404, b"Not Found", "text/plain; charset=utf-8")
    r = error_response(400, "bad thing", headers=[("X-Why", "because")])
    assert r.body == b"bad thing"
    assert ("X-Why", "because") in r.headers


@pytest.mark.parametrize("status", [400, 404, 418, 500, 599])
def test_http_error_valid(status: int) -> None:
    exc = HTTPError(status, "detail", {"X-A": "1"})
    assert exc.status == status
    assert exc.detail == "detail"
    assert exc.headers == {"X-A": "1"}
    assert str(exc) == f"{status}: detail"
    assert str(HTTPError(status)) == str(status)


@pytest.mark.parametrize("status", [200, 302, 399, 600, 0, -1, "404", 404.0, None])
def test_http_error_status_outside_range(status: object) -> None:
    with pytest.raises(ValueError, match="from 400 to 599"):
        HTTPError(status)  # type: ignore[arg-type]


def test_module_exports() -> None:
    for name in response_module.__all__:
        assert hasattr(response_module, name)


def test_header_value_outside_latin1_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="not latin-1; percent-encode it"):
        Response(b"", headers={"X-Name": "€uro"})


def test_latin1_header_value_is_kept() -> None:
    response = Response(b"", headers={"X-Name": "café"})
    assert b"X-Name: caf\xe9\r\n" in response.render(0, False)

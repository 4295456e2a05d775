"""Cookies: parsing the Cookie header (RFC 6265 section 5.4, tolerant), writing Set-Cookie (strict)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyclehttp import App, Request, Response
from cyclehttp.cycle.cookies import MAX_COOKIE_PAIRS, parse_cookie_header, set_cookie_header

# --- parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1", {"a": "1"}),
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("a=1;b=2", {"a": "1", "b": "2"}),
        ('  a = "quoted value" ;  b=2 ', {"a": "quoted value", "b": "2"}),
        ("token=abc==; x=a=b=c", {"token": "abc==", "x": "a=b=c"}),
        ("empty=; b=", {"empty": "", "b": ""}),
        ('q=""', {"q": ""}),
        ('half="open', {"half": '"open'}),
        ("novalue; a=1; =nameless; ;;", {"a": "1"}),
        ("bad name=1; b@d=2; ok=3", {"ok": "3"}),
        ("a=1; a=2", {"a": "1"}),  # the first wins: browsers send the most specific path first
        ("", {}),
        (
            "_ga=GA1.2.1.2; __Secure-id=x%20y; json={%22k%22:1}",
            {"_ga": "GA1.2.1.2", "__Secure-id": "x%20y", "json": "{%22k%22:1}"},
        ),
    ],
)
def test_parse_cookie_header(header: str, expected: dict[str, str]) -> None:
    assert parse_cookie_header([header]) == expected


def test_several_cookie_headers_are_joined_first_wins() -> None:
    assert parse_cookie_header(["a=1; b=2", "b=3; c=4"]) == {"a": "1", "b": "2", "c": "4"}


def test_pairs_beyond_the_cap_are_ignored() -> None:
    header = "; ".join(f"c{i}={i}" for i in range(10_000))
    cookies = parse_cookie_header([header])
    assert len(cookies) == MAX_COOKIE_PAIRS
    assert cookies["c0"] == "0" and f"c{MAX_COOKIE_PAIRS - 1}" in cookies
    assert f"c{MAX_COOKIE_PAIRS}" not in cookies
    # the cap counts across headers too
    assert len(parse_cookie_header([header, "late=1"])) == MAX_COOKIE_PAIRS
    assert parse_cookie_header(["a=1; b=2", "c=3"], max_pairs=2) == {"a": "1", "b": "2"}
    assert parse_cookie_header(["a=1; b=2; c=3"], max_pairs=3) == {"a": "1", "b": "2", "c": "3"}


def test_huge_cookie_header_is_fast() -> None:
    header = "; ".join(f"c{i}=" + "v" * 20 for i in range(100_000))
    start = time.perf_counter()
    parse_cookie_header([header])
    assert time.perf_counter() - start < 0.05


_NAME = st.from_regex(r"[A-Za-z0-9_\-.!#$%&'*+^`|~]{1,12}", fullmatch=True)
_VALUE = st.from_regex(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{0,20}", fullmatch=True)


@given(st.dictionaries(_NAME, _VALUE, max_size=10))
def test_rendered_cookies_parse_back(cookies: dict[str, str]) -> None:
    header = "; ".join(set_cookie_header(n, v).partition(";")[0] for n, v in cookies.items())
    assert parse_cookie_header([header]) == cookies


# --- Set-Cookie ------------------------------------------------------------------


def test_set_cookie_header_defaults_and_attributes() -> None:
    assert set_cookie_header("sid", "abc") == "sid=abc; Path=/; SameSite=Lax"
    assert (
        set_cookie_header(
            "sid",
            '"q"',
            max_age=60,
            domain="example.com",
            path="/app",
            secure=True,
            httponly=True,
            samesite="none",
            partitioned=True,
        )
        == 'sid="q"; Max-Age=60; Domain=example.com; Path=/app; Secure; HttpOnly; SameSite=None; Partitioned'
    )
    assert set_cookie_header("a", "", path=None, samesite=None) == "a="
    assert set_cookie_header("a", "1", samesite="strict").endswith("SameSite=Strict")


@pytest.mark.parametrize(
    ("samesite", "attribute"),
    [
        ("Lax", "SameSite=Lax"),  # the canonical spelling (RFC 6265bis, Flask's docs)
        ("lax", "SameSite=Lax"),
        ("LAX", "SameSite=Lax"),
        ("lAx", "SameSite=Lax"),
        ("Strict", "SameSite=Strict"),
        ("STRICT", "SameSite=Strict"),
        ("None", "SameSite=None"),  # the string, not Python's None
        ("NONE", "SameSite=None"),
        ("none", "SameSite=None"),
    ],
)
def test_samesite_is_accepted_in_any_case_and_written_canonically(samesite: str, attribute: str) -> None:
    header = set_cookie_header("sid", "abc", secure=True, samesite=samesite)  # type: ignore[arg-type]
    assert header == f"sid=abc; Path=/; Secure; {attribute}"
    response = Response.text("x").set_cookie("sid", "abc", secure=True, samesite=samesite)  # type: ignore[arg-type]
    assert ("Set-Cookie", header) in response.headers


@pytest.mark.parametrize("samesite", ["sometimes", "", "Lax ", "lax;", "SameSite=Lax", "Laxx", True, 1])
def test_an_unknown_samesite_is_refused_naming_the_choices(samesite: object) -> None:
    with pytest.raises(ValueError, match=r"samesite must be 'Lax', 'Strict' or 'None'") as caught:
        set_cookie_header("a", "1", secure=True, samesite=samesite)  # type: ignore[arg-type]
    assert repr(samesite) in str(caught.value)


@pytest.mark.parametrize("samesite", ["None", "NONE", "none"])
def test_samesite_none_in_any_case_still_needs_secure(samesite: str) -> None:
    with pytest.raises(ValueError, match=r"needs secure=True") as caught:
        set_cookie_header("a", "1", samesite=samesite)  # type: ignore[arg-type]
    assert repr(samesite) in str(caught.value)


def test_set_cookie_expires() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert "Expires=Wed, 02 Jan 2030 01:04:05 GMT" in set_cookie_header("a", "1", expires=when)
    header = set_cookie_header("a", "1", expires=3600)
    expires = header.split("Expires=")[1].split(";")[0]
    parsed = datetime.strptime(expires, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert abs((parsed - datetime.now(UTC)).total_seconds() - 3600) < 5
    with pytest.raises(ValueError, match="aware"):
        set_cookie_header("a", "1", expires=datetime(2030, 1, 1))
    with pytest.raises(TypeError):
        set_cookie_header("a", "1", expires="tomorrow")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        set_cookie_header("a", "1", max_age=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "a b", "value": "1"},
        {"name": "", "value": "1"},
        {"name": "a;b", "value": "1"},
        {"name": "a\r\nSet-Cookie: x", "value": "1"},
        {"name": "é", "value": "1"},
        {"name": "a", "value": "1\r\nX-Injected: yes"},
        {"name": "a", "value": "1\nx"},
        {"name": "a", "value": "1; Domain=evil.com"},
        {"name": "a", "value": "1,b=2"},
        {"name": "a", "value": "with space"},
        {"name": "a", "value": "back\\slash"},
        {"name": "a", "value": "\x00"},
        {"name": "a", "value": "\x7f"},
        {"name": "a", "value": "é"},
        {"name": "a", "value": '"unbalanced'},
        {"name": "a", "value": "1", "path": "/; Domain=evil.com"},
        {"name": "a", "value": "1", "path": "/\r\nX: y"},
        {"name": "a", "value": "1", "domain": "x.com; Secure"},
        {"name": "a", "value": "1", "domain": ""},
        {"name": "a", "value": "1", "samesite": "none"},  # needs secure
        {"name": "a", "value": "1", "samesite": "sometimes"},
        {"name": "a", "value": "1", "partitioned": True},  # needs secure
    ],
)
def test_set_cookie_refuses_injection(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        set_cookie_header(**kwargs)  # type: ignore[arg-type]
    name, value = kwargs.pop("name"), kwargs.pop("value")
    with pytest.raises(ValueError):
        Response.text("x").set_cookie(name, value, **kwargs)  # type: ignore[arg-type]


def test_response_with_cookie_returns_a_new_response() -> None:
    original = Response.text("hi", headers={"X-A": "1"})
    response = original.with_cookie("a", "1").with_cookie("b", "2", httponly=True)
    assert original.headers == (("Content-Type", "text/plain; charset=utf-8"), ("X-A", "1"))
    assert [v for n, v in response.headers if n == "Set-Cookie"] == [
        "a=1; Path=/; SameSite=Lax",
        "b=2; Path=/; HttpOnly; SameSite=Lax",
    ]
    assert response.body == b"hi" and response.content_type == "text/plain; charset=utf-8"
    assert b"Set-Cookie: a=1; Path=/; SameSite=Lax\r\n" in response.header_block


def test_delete_cookie() -> None:
    response = Response.text("bye").delete_cookie("sid", path="/app", domain="example.com")
    assert response.headers[-1] == (
        "Set-Cookie",
        "sid=; Max-Age=0; Domain=example.com; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    )


# --- over real sockets --------------------------------------------------------


def login(request: Request) -> Response:
    return Response.text("in").set_cookie("sid", "s3cr3t", httponly=True).set_cookie("theme", "dark")


def whoami(request: Request) -> dict[str, object]:
    return {"cookies": request.cookies}


def logout(request: Request) -> Response:
    return Response.text("out").delete_cookie("sid")


COOKIE_APP = App([("GET", "/login", login), ("GET", "/whoami", whoami), ("GET", "/logout", logout)])


async def test_cookies_round_trip_through_httpx(cyclehttp_server) -> None:
    server = await cyclehttp_server(COOKIE_APP)
    async with httpx.AsyncClient(base_url=server.url) as client:
        first = await client.get("/login")
        assert first.headers.get_list("set-cookie") == [
            "sid=s3cr3t; Path=/; HttpOnly; SameSite=Lax",
            "theme=dark; Path=/; SameSite=Lax",
        ]
        assert (await client.get("/whoami")).json() == {"cookies": {"sid": "s3cr3t", "theme": "dark"}}
        await client.get("/logout")
        assert (await client.get("/whoami")).json() == {"cookies": {"theme": "dark"}}


async def test_several_cookie_headers_and_junk_over_raw(cyclehttp_server) -> None:
    server = await cyclehttp_server(COOKIE_APP)
    async with await server.raw() as connection:
        await connection.send(
            b'GET /whoami HTTP/1.1\r\nHost: t\r\nCookie: a="1"; junk; =x; b=2\r\nCookie: a=3; c=\r\n\r\n'
        )
        response = await connection.read_response()
        assert response.status == 200
        assert response.json() == {"cookies": {"a": "1", "b": "2", "c": ""}}


async def test_cookie_header_of_10000_pairs_is_answered_fast(cyclehttp_server) -> None:
    server = await cyclehttp_server(COOKIE_APP, max_header_size=256 * 1024)
    header = "; ".join(f"c{i}=v{i}" for i in range(10_000)).encode("ascii")
    assert len(header) > 100_000
    async with await server.raw() as connection:
        start = time.perf_counter()
        await connection.send(b"GET /whoami HTTP/1.1\r\nHost: t\r\nCookie: " + header + b"\r\n\r\n")
        response = await connection.read_response()
        elapsed = time.perf_counter() - start
    assert response.status == 200
    cookies = response.json()["cookies"]
    assert len(cookies) == MAX_COOKIE_PAIRS and cookies["c0"] == "v0"
    assert elapsed < 1.0

"""Conditional and compressed static responses: ETag, 304 Not Modified, gzip and br variants.

RFC 9110 section 13.1.2 (If-None-Match, weak comparison), 15.4.5 (304) and 12.5.3
(Accept-Encoding). End-to-end over real sockets with the strict ``RawConnection`` client,
plus unit tests of the field parsers. Every wait is bounded.

The app is built with brotli hidden (``_brotli`` monkeypatched to None) so the gzip tests
mean the same with and without the optional ``brotli`` package; br has tests of its own
that run only when it is importable.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import logging
import re
from collections.abc import Awaitable, Callable

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.clock.accesslog import ACCESS_LOGGER
from cyclehttp.cycle import prerendered as prerendered_module
from cyclehttp.cycle.negotiation import accept_encoding_weights
from cyclehttp.cycle.prerendered import (
    COMPRESS_MIN_SIZE,
    SPLIT_BODY_THRESHOLD,
    PrerenderedResponse,
    etag_matches,
)
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection, RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]

BIG_TEXT = "".join(f"line {i:03d}: a static body worth compressing\n" for i in range(60))
HUGE_TEXT = "".join(f"row {i:05d}: past the split threshold\n" for i in range(800))
BIG_JSON = {"items": [{"id": i, "name": f"item {i}"} for i in range(80)]}
PNG_LIKE = bytes(range(256)) * 8  # incompressible bytes of a type that is not compressed anyway
ETAG_RE = re.compile(r'"[0-9a-f]{16}"')

assert len(BIG_TEXT) > COMPRESS_MIN_SIZE and len(HUGE_TEXT) > SPLIT_BODY_THRESHOLD

HAS_BROTLI = importlib.util.find_spec("brotli") is not None


async def slow(request: Request) -> str:
    await asyncio.sleep(0.05)
    return "slow"


def build_routes() -> list[tuple[str, str, object]]:
    return [
        ("GET", "/", Response.text("Hello, World!")),
        ("GET", "/big", Response.text(BIG_TEXT, headers={"Cache-Control": "max-age=60", "X-Extra": "1"})),
        ("GET", "/huge", Response.text(HUGE_TEXT)),
        ("GET", "/json", Response.json(BIG_JSON)),
        ("GET", "/png", Response(PNG_LIKE, content_type="image/png")),
        ("GET", "/empty", Response(b"", 204)),
        ("GET", "/tagged", Response.text("mine", headers={"ETag": 'W/"v1"'})),
        ("GET", "/varied", Response.text(BIG_TEXT, headers={"Vary": "Cookie"})),
        ("GET", "/slow", slow),
    ]


@pytest.fixture
def no_brotli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prerendered_module, "_brotli", None)


@pytest.fixture
def cyclehttp_app(no_brotli: None) -> App:
    return App(build_routes())


Raw = Callable[[], Awaitable[RawConnection]]


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def fetch(raw: Raw, path: str, *headers: str, method: str = "GET") -> RawResponse:
    connection = await raw()
    await connection.send(get(path, *headers, method=method))
    return await connection.read_response(head=method == "HEAD")


# --- ETag -------------------------------------------------------------------


async def test_static_2xx_has_a_stable_strong_etag(cyclehttp_raw: Raw) -> None:
    first = await fetch(cyclehttp_raw, "/big")
    second = await fetch(cyclehttp_raw, "/big")
    head = await fetch(cyclehttp_raw, "/big", method="HEAD")
    etag = first.header("ETag")
    assert etag is not None and ETAG_RE.fullmatch(etag)
    assert second.header("ETag") == head.header("ETag") == etag
    # Computed from the content, so the same on every start (and every worker).
    assert PrerenderedResponse(
        Response.text(BIG_TEXT, headers={"Cache-Control": "max-age=60", "X-Extra": "1"})
    ).etag == (etag.encode())


def test_etag_changes_with_body_and_headers() -> None:
    tags = {
        PrerenderedResponse(Response.text("a")).etag,
        PrerenderedResponse(Response.text("b")).etag,
        PrerenderedResponse(Response.html("a")).etag,
        PrerenderedResponse(Response.text("a", headers={"Cache-Control": "no-cache"})).etag,
    }
    assert len(tags) == 4


async def test_bodyless_2xx_has_an_etag_too(cyclehttp_raw: Raw) -> None:
    answer = await fetch(cyclehttp_raw, "/empty")
    assert answer.status == 204
    assert ETAG_RE.fullmatch(answer.header("ETag") or "")


async def test_errors_and_handlers_have_no_etag(cyclehttp_raw: Raw) -> None:
    for path, method, status in (("/nowhere", "GET", 404), ("/big", "DELETE", 405), ("/slow", "GET", 200)):
        answer = await fetch(cyclehttp_raw, path, method=method)
        assert answer.status == status
        assert answer.header("ETag") is None
    # And If-None-Match: * does not turn them into a 304 (RFC 9110 section 13.2.1).
    answer = await fetch(cyclehttp_raw, "/nowhere", "If-None-Match: *")
    assert answer.status == 404


async def test_a_declared_etag_is_kept(cyclehttp_raw: Raw) -> None:
    answer = await fetch(cyclehttp_raw, "/tagged")
    assert answer.header_all("ETag") == ['W/"v1"']
    assert (await fetch(cyclehttp_raw, "/tagged", 'If-None-Match: "v1"')).status == 304


def test_a_malformed_declared_etag_turns_conditional_answers_off() -> None:
    static = PrerenderedResponse(Response.text("x", headers={"ETag": "no-quotes"}))
    assert static.etag is None and static.not_modified is None
    assert static.select(b"*", b"gzip") is static
    assert b"ETag: no-quotes\r\n" in static.buffers[0]


# --- If-None-Match ----------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    ["{tag}", "W/{tag}", '"other", {tag}', '"a", W/"b" ,{tag}  , ', " {tag} ", "*", ", , {tag}"],
    ids=["exact", "weak", "list", "list-ows", "ows", "star", "empty-elements"],
)
async def test_if_none_match_that_matches_gives_304(cyclehttp_raw: Raw, template: str) -> None:
    etag = (await fetch(cyclehttp_raw, "/big")).header("ETag")
    assert etag is not None
    answer = await fetch(cyclehttp_raw, "/big", "If-None-Match: " + template.format(tag=etag))
    assert answer.status == 304
    assert answer.body == b""


@pytest.mark.parametrize(
    "value",
    ['"0000000000000000"', "{bare}", '"unterminated', "{tag} garbage", '{tag}, "a" "b"', "", "**", 'w/{tag}',
     '"a b"'],
    ids=["other-tag", "unquoted", "unterminated", "trailing-garbage", "missing-comma", "empty", "stars",
         "lowercase-w", "space-in-tag"],
)  # fmt: skip
async def test_if_none_match_that_does_not_match_or_is_malformed_gives_200(
    cyclehttp_raw: Raw, value: str
) -> None:
    etag = (await fetch(cyclehttp_raw, "/big")).header("ETag")
    assert etag is not None
    answer = await fetch(
        cyclehttp_raw, "/big", "If-None-Match: " + value.format(tag=etag, bare=etag.strip('"'))
    )
    assert answer.status == 200
    assert answer.body == BIG_TEXT.encode()


async def test_if_none_match_sent_twice_is_one_list(cyclehttp_raw: Raw) -> None:
    etag = (await fetch(cyclehttp_raw, "/big")).header("ETag")
    answer = await fetch(cyclehttp_raw, "/big", 'If-None-Match: "nope"', f"If-None-Match: {etag}")
    assert answer.status == 304


async def test_304_carries_the_validator_and_cache_fields_only(cyclehttp_raw: Raw) -> None:
    connection = await cyclehttp_raw()
    await connection.send(get("/big"))
    full = await connection.read_response()
    await connection.send(get("/big", f"If-None-Match: {full.header('ETag')}"))
    answer = await connection.read_response()
    assert answer.status == 304
    assert answer.reason == "Not Modified"
    names = [name.lower() for name, _ in answer.headers]
    assert names == ["date", "cache-control", "vary", "etag"]
    assert answer.header("ETag") == full.header("ETag")
    assert answer.header("Cache-Control") == "max-age=60"
    assert answer.header("Vary") == "Accept-Encoding"
    assert answer.raw.endswith(b"\r\n\r\n")  # no body, no Content-Length
    # The connection stays open and in step.
    await connection.send(get("/"))
    assert (await connection.read_response()).body == b"Hello, World!"


async def test_head_with_a_matching_tag_gives_304(cyclehttp_raw: Raw) -> None:
    etag = (await fetch(cyclehttp_raw, "/big")).header("ETag")
    answer = await fetch(cyclehttp_raw, "/big", f"If-None-Match: {etag}", method="HEAD")
    assert answer.status == 304
    assert answer.header("ETag") == etag


async def test_bodyless_2xx_gives_304_on_a_match(cyclehttp_raw: Raw) -> None:
    answer = await fetch(cyclehttp_raw, "/empty", "If-None-Match: *")
    assert answer.status == 304


async def test_connection_close_on_a_304(cyclehttp_raw: Raw) -> None:
    connection = await cyclehttp_raw()
    await connection.send(get("/big", "If-None-Match: *", "Connection: close"))
    answer = await connection.read_response()
    assert answer.status == 304
    assert answer.header("Connection") == "close"
    assert await connection.is_closed_by_peer()


# --- gzip -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip", "gzip"),
        ("gzip, deflate, br", "gzip"),  # br is not offered here (brotli hidden)
        ("GZIP;Q=1", "gzip"),
        ("x-gzip", "gzip"),
        ("*", "gzip"),
        ("deflate, *;q=0.1", "gzip"),
        ("gzip;q=0.001", "gzip"),
        ("gzip, identity", "gzip"),  # a tie goes to the smaller answer
        ("br;q=1, gzip;q=0.5", "gzip"),
        ("gzip;q=0", None),
        ("*, gzip;q=0", None),
        ("identity", None),
        ("deflate", None),
        ("", None),
        ("*;q=0", None),
        ("gzip;q=0.5, identity", None),
        ("gzip;q=2", None),  # not a qvalue: not acceptable
        ("gzip;q=abc", None),
        ("gzip;q=0.5000", None),  # four decimals are not a qvalue
    ],
)
async def test_gzip_is_chosen_by_accept_encoding(cyclehttp_raw: Raw, accept: str, coding: str | None) -> None:
    answer = await fetch(cyclehttp_raw, "/big", f"Accept-Encoding: {accept}")
    assert answer.status == 200
    assert answer.header("Content-Encoding") == coding
    assert answer.header("Vary") == "Accept-Encoding"
    body = gzip.decompress(answer.body) if coding == "gzip" else answer.body
    assert body == BIG_TEXT.encode()
    assert int(answer.header("Content-Length") or -1) == len(answer.body)


async def test_gzip_variant_has_its_own_etag_and_304(cyclehttp_raw: Raw) -> None:
    plain = await fetch(cyclehttp_raw, "/big")
    packed = await fetch(cyclehttp_raw, "/big", "Accept-Encoding: gzip")
    plain_tag, packed_tag = plain.header("ETag"), packed.header("ETag")
    assert plain_tag is not None and packed_tag == plain_tag[:-1] + '-gzip"'
    assert len(packed.body) < len(plain.body)
    assert plain.header("Vary") == packed.header("Vary") == "Accept-Encoding"
    answer = await fetch(cyclehttp_raw, "/big", "Accept-Encoding: gzip", f"If-None-Match: {packed_tag}")
    assert answer.status == 304
    assert answer.header("ETag") == packed_tag
    assert answer.header("Content-Encoding") is None  # not among the 304's fields
    # A tag is compared with the variant the request selects (strong validators differ).
    assert (await fetch(cyclehttp_raw, "/big", f"If-None-Match: {packed_tag}")).status == 200
    answer = await fetch(cyclehttp_raw, "/big", "Accept-Encoding: gzip", f"If-None-Match: {plain_tag}")
    assert answer.status == 200 and answer.header("Content-Encoding") == "gzip"
    both = f"If-None-Match: {plain_tag}, {packed_tag}"
    assert (await fetch(cyclehttp_raw, "/big", "Accept-Encoding: gzip", both)).status == 304
    assert (await fetch(cyclehttp_raw, "/big", both)).status == 304


async def test_head_gets_the_gzip_head(cyclehttp_raw: Raw) -> None:
    full = await fetch(cyclehttp_raw, "/big", "Accept-Encoding: gzip")
    head = await fetch(cyclehttp_raw, "/big", "Accept-Encoding: gzip", method="HEAD")
    assert head.headers[1:] == full.headers[1:]  # all but Date (which may have ticked)
    assert head.raw.endswith(b"\r\n\r\n")


async def test_json_and_split_bodies_get_gzip_too(cyclehttp_raw: Raw) -> None:
    answer = await fetch(cyclehttp_raw, "/json", "Accept-Encoding: gzip")
    assert answer.header("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(answer.body)) == BIG_JSON
    for accept in ("Accept-Encoding: gzip", "Accept-Encoding: identity"):
        answer = await fetch(cyclehttp_raw, "/huge", accept)
        body = gzip.decompress(answer.body) if answer.header("Content-Encoding") else answer.body
        assert body == HUGE_TEXT.encode()


@pytest.mark.parametrize("path", ["/", "/png", "/empty", "/tagged"])
async def test_small_and_incompressible_bodies_get_no_variant(cyclehttp_raw: Raw, path: str) -> None:
    answer = await fetch(cyclehttp_raw, path, "Accept-Encoding: gzip, deflate, br")
    assert answer.status in (200, 204)
    assert answer.header("Content-Encoding") is None
    assert answer.header("Vary") is None


async def test_a_declared_vary_gets_accept_encoding_added(cyclehttp_raw: Raw) -> None:
    for accept in ("gzip", "identity"):
        answer = await fetch(cyclehttp_raw, "/varied", f"Accept-Encoding: {accept}")
        assert answer.header_all("Vary") == ["Cookie, Accept-Encoding"]


def test_only_smaller_variants_are_kept(no_brotli: None) -> None:
    random_text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2000))  # barely compressible
    static = PrerenderedResponse(Response.text(random_text))
    assert all(len(v.body) < len(static.body) for v in static.encoded)
    already = PrerenderedResponse(
        Response(
            gzip.compress(BIG_TEXT.encode()), headers={"Content-Encoding": "gzip"}, content_type="text/plain"
        )
    )
    assert already.encoded == ()


# --- pipelining, metrics, the access log, the Date refresh ------------------


async def test_pipelined_mixture_is_answered_in_order(cyclehttp_raw: Raw) -> None:
    etag = (await fetch(cyclehttp_raw, "/big")).header("ETag")
    requests = [
        (get("/big"), False, 200, None),
        (get("/big", f"If-None-Match: {etag}"), False, 304, None),
        (get("/slow"), False, 200, None),  # async: the rest queue behind it
        (get("/big", "Accept-Encoding: gzip"), False, 200, "gzip"),
        (get("/big", "Accept-Encoding: gzip", method="HEAD"), True, 200, "gzip"),
        (get("/big", f"If-None-Match: {etag}", method="HEAD"), True, 304, None),
        (get("/"), False, 200, None),
    ]
    connection = await cyclehttp_raw()
    await connection.send(b"".join(data for data, _, _, _ in requests))
    for _, head, status, coding in requests:
        answer = await connection.read_response(head=head)
        assert (answer.status, answer.header("Content-Encoding")) == (status, coding)


async def test_metrics_count_304_as_3xx(cyclehttp_server: ServerFactory, no_brotli: None) -> None:
    server = await cyclehttp_server(App(build_routes()))
    connection = await server.raw()
    await connection.send(get("/big"))
    etag = (await connection.read_response()).header("ETag")
    for data in (get("/big", f"If-None-Match: {etag}"), get("/big", "Accept-Encoding: gzip"),
                 get("/big", "Accept-Encoding: gzip", f'If-None-Match: {(etag or "")[:-1]}-gzip"'),
                 get("/big", "If-None-Match: *", method="HEAD")):  # fmt: skip
        await connection.send(data)
        await connection.read_response(head=data.startswith(b"HEAD"))
    counts = {(r.method, r.route, r.status): r.count for r in server.stats.requests_by_route}
    assert counts[("GET", "/big", "2xx")] == 2
    assert counts[("GET", "/big", "3xx")] == 3
    assert server.stats.requests_by_status["3xx"] == 3
    server.server.stats.reset()
    assert server.stats.requests == 0


async def test_access_log_has_the_status_and_size_sent(
    cyclehttp_server: ServerFactory, caplog: pytest.LogCaptureFixture, no_brotli: None
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    server = await cyclehttp_server(App(build_routes()), access_log=True)
    connection = await server.raw()
    await connection.send(get("/big", "Accept-Encoding: gzip"))
    packed = await connection.read_response()
    await connection.send(get("/big", f"If-None-Match: {packed.header('ETag')}", "Accept-Encoding: gzip"))
    assert (await connection.read_response()).status == 304
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert f'"GET /big HTTP/1.1" 200 {len(packed.body)} ' in lines[0]
    assert '"GET /big HTTP/1.1" 304 - ' in lines[1]


async def test_date_of_variants_is_refreshed(cyclehttp_raw: Raw) -> None:
    connection = await cyclehttp_raw()
    requests = {"gzip": get("/huge", "Accept-Encoding: gzip"), "304": get("/big", "If-None-Match: *")}
    first = {}
    for name, data in requests.items():
        await connection.send(data)
        first[name] = (await connection.read_response()).header("Date")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    pending = set(requests)
    while pending and loop.time() < deadline:
        await asyncio.sleep(0.25)
        for name in list(pending):
            await connection.send(requests[name])
            if (await connection.read_response()).header("Date") != first[name]:
                pending.discard(name)
    assert not pending, f"Date never changed for {pending} within 3 s"


# --- brotli -----------------------------------------------------------------


@pytest.mark.skipif(not HAS_BROTLI, reason="the optional brotli package is not installed")
async def test_br_is_preferred_when_installed(cyclehttp_server: ServerFactory) -> None:
    import brotli  # type: ignore[import-not-found,import-untyped,unused-ignore]

    server = await cyclehttp_server(App(build_routes()))
    connection = await server.raw()
    expected = {"gzip, deflate, br": "br", "br;q=0.5, gzip": "gzip", "br": "br", "*": "br", "gzip": "gzip"}
    for accept, coding in expected.items():
        await connection.send(get("/big", f"Accept-Encoding: {accept}"))
        answer = await connection.read_response()
        assert answer.header("Content-Encoding") == coding, accept
        decode = brotli.decompress if coding == "br" else gzip.decompress
        assert decode(answer.body) == BIG_TEXT.encode()
        assert (answer.header("ETag") or "").endswith(f'-{coding}"')
    await connection.send(get("/big", "Accept-Encoding: br", f"If-None-Match: {answer.header('ETag')}"))
    assert (await connection.read_response()).status == 200  # the gzip tag does not match the br one


def test_without_brotli_there_is_no_br_variant(no_brotli: None) -> None:
    static = PrerenderedResponse(Response.text(BIG_TEXT))
    assert [v.coding for v in static.encoded] == ["gzip"]
    assert static.select(None, b"br") is static


# --- the field parsers ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "etag", "expected"),
    [
        (b'"a"', b'"a"', True),
        (b'W/"a"', b'"a"', True),
        (b'"a"', b'W/"a"', True),
        (b'"b", "a"', b'"a"', True),
        (b"*", b'"a"', True),
        (b'"a,b"', b'"a,b"', True),  # a comma inside the quotes is part of the tag
        (b'"a,b"', b'"a"', False),
        (b'"A"', b'"a"', False),
        (b"a", b'"a"', False),
        (b'"a" "b"', b'"a"', False),
        (b"", b'"a"', False),
        (b'"a"\x00', b'"a"', False),
    ],
)
def test_etag_matches(field: bytes, etag: bytes, expected: bool) -> None:
    assert etag_matches(field, etag) is expected


def test_accept_encoding_weights() -> None:
    assert accept_encoding_weights(b"gzip;q=0.8, br , *;q=0, x-gzip") == {"gzip": 0.8, "br": 1.0, "*": 0.0}
    assert accept_encoding_weights(b" , ,") == {}

"""Trailer fields of a chunked request body (RFC 9110 section 6.5, RFC 9112 section 7.1.2).

Trailers arrive after the body. RFC 9110 section 6.5.2 forbids merging them into
the header section, so the server keeps them apart (``request.trailers``) and
never acts on them: not for Host, cookies, framing, conditional answers, Expect
or the proxy headers. The trailer section is bounded by ``max_header_size`` too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.testing import TestServer

ServerFactory = Callable[..., Awaitable[TestServer]]


def chunked_post(path: str, body: bytes, trailers: bytes, *headers: bytes) -> bytes:
    head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n"
    head += b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n" + trailers + b"\r\n"


def seen_app() -> tuple[App, list[dict[str, Any]]]:
    """An app whose handler records what it saw of its request."""
    app = App()
    seen: list[dict[str, Any]] = []
    started = asyncio.Event()
    app.state.started = started

    @app.post("/see")
    def see(request: Request) -> dict[str, Any]:
        record = {
            "headers": dict(request.headers),
            "trailers": request.trailers.multi_items(),
            "cookies": request.cookies,
            "client": request.client,
            "scheme": request.scheme,
            "host": request.host,
            "body": request.body,
        }
        seen.append(record)
        return {"ok": True}

    @app.post("/stream", stream_body=True)
    async def stream(request: Request) -> dict[str, Any]:
        try:
            early: object = request.trailers
        except RuntimeError as exc:
            early = str(exc)
        started.set()
        body = await request.read()  # type: ignore[attr-defined]
        seen.append(
            {
                "early": early,
                "body": body,
                "trailers": request.trailers.multi_items(),
                "headers": dict(request.headers),
            }
        )
        return {"ok": True}

    app.add_route("POST", "/static", Response.text("static"))
    return app, seen


async def test_trailers_are_not_headers_and_are_readable_apart(cyclehttp_server: ServerFactory) -> None:
    app, seen = seen_app()
    server = await cyclehttp_server(app)
    async with await server.raw() as conn:
        await conn.send(
            chunked_post(
                "/see", b"hello", b"X-Internal-User: admin\r\nCookie: sid=stolen\r\nHost: evil.test\r\n"
            )
        )
        response = await conn.read_response()
    assert response.status == 200
    (record,) = seen
    assert record["body"] == b"hello"
    assert "x-internal-user" not in record["headers"]
    assert "cookie" not in record["headers"]
    assert record["headers"]["host"] == "origin.test"
    assert record["cookies"] == {}
    assert record["host"] == "origin.test"
    assert record["trailers"] == [
        ("X-Internal-User", "admin"),
        ("Cookie", "sid=stolen"),
        ("Host", "evil.test"),
    ]


async def test_a_request_without_trailers_has_none(cyclehttp_server: ServerFactory) -> None:
    app, seen = seen_app()
    server = await cyclehttp_server(app)
    async with await server.raw() as conn:
        await conn.send(chunked_post("/see", b"x", b""))
        assert (await conn.read_response()).status == 200
        # The next request on the connection inherits nothing from a trailer before it.
        await conn.send(chunked_post("/see", b"y", b"X-One: 1\r\n"))
        assert (await conn.read_response()).status == 200
        await conn.send(chunked_post("/see", b"z", b""))
        assert (await conn.read_response()).status == 200
    assert [r["trailers"] for r in seen] == [[], [("X-One", "1")], []]


async def test_a_trailer_never_names_the_client_behind_a_proxy(cyclehttp_server: ServerFactory) -> None:
    app, seen = seen_app()
    server = await cyclehttp_server(app, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    async with await server.raw() as conn:
        await conn.send(
            chunked_post(
                "/see",
                b"hello",
                b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n"
                b"Forwarded: for=6.6.6.7;proto=https;host=evil.test\r\n",
                b"X-Forwarded-For: 203.0.113.9",
            )
        )
        assert (await conn.read_response()).status == 200
    (record,) = seen
    assert record["client"] == ("203.0.113.9", 0)
    assert record["scheme"] == "http"
    assert record["host"] == "origin.test"


async def test_stream_body_trailers_come_after_the_body(cyclehttp_server: ServerFactory) -> None:
    app, seen = seen_app()
    server = await cyclehttp_server(app)
    message = chunked_post("/stream", b"streamed", b"X-Checksum: abc\r\nX-Forwarded-For: 6.6.6.6\r\n")
    head, _, rest = message.partition(b"\r\n\r\n")
    async with await server.raw() as conn:
        await conn.send(head + b"\r\n\r\n")
        await asyncio.wait_for(app.state.started.wait(), 5.0)  # the handler runs before the body
        await conn.send(rest)
        response = await conn.read_response()
    assert response.status == 200, response.body
    (record,) = seen
    assert "trailers come after the body" in record["early"]
    assert record["body"] == b"streamed"
    assert record["trailers"] == [("X-Checksum", "abc"), ("X-Forwarded-For", "6.6.6.6")]
    assert "x-checksum" not in record["headers"]


@pytest.mark.parametrize(
    "trailer",
    [
        b"Expect: 100-continue\r\n",
        b"Accept-Encoding: gzip\r\n",
        b"If-None-Match: *\r\n",
        b"Host: a\r\nHost: b\r\n",
        b"Upgrade: websocket\r\n",
    ],
    ids=["expect", "accept-encoding", "if-none-match", "host", "upgrade"],
)
async def test_a_trailer_changes_nothing_the_server_does(
    cyclehttp_server: ServerFactory, trailer: bytes
) -> None:
    app, _ = seen_app()
    server = await cyclehttp_server(app)
    async with await server.raw() as conn:
        await conn.send(chunked_post("/static", b"x", trailer) + chunked_post("/see", b"y", trailer))
        static, handled = await conn.read_responses(2)
        assert static.status == 200 and static.body == b"static"
        assert static.header("connection") is None
        assert handled.status == 200
        # The connection stays usable, and the next request sees no Expect or condition of a trailer.
        await conn.send(b"POST /static HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nz")
        again = await conn.read_response()
        assert again.status == 200 and again.body == b"static"


@pytest.mark.parametrize(
    ("trailer", "status"),
    [
        (b"Connection: close\r\n", 400),
        (b"Proxy-Connection: close\r\n", 400),
        (b"Connection: keep-alive\r\n", 400),
        (b"Transfer-Encoding: gzip\r\n", 501),
        (b"Transfer-Encoding: chunked\r\n", 501),
        (b"Content-Length: 5\r\n", 400),
    ],
)
async def test_framing_and_connection_fields_in_a_trailer_are_refused(
    cyclehttp_server: ServerFactory, trailer: bytes, status: int
) -> None:
    """A sender must not put them in a trailer (RFC 9110 section 6.5.1); llhttp would act on them."""
    app, seen = seen_app()
    server = await cyclehttp_server(app)
    async with await server.raw() as conn:
        await conn.send(chunked_post("/see", b"x", trailer) + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = await conn.read_response()
        assert response.status == status
        assert response.header("connection") == "close"
        assert await conn.is_closed_by_peer(timeout=5.0)
    assert seen == []


async def test_trailers_are_bounded_by_the_header_limit(cyclehttp_server: ServerFactory) -> None:
    app, seen = seen_app()
    server = await cyclehttp_server(app, max_header_size=1024)
    async with await server.raw() as conn:
        many = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 40) for i in range(40))
        await conn.send(chunked_post("/see", b"x", many))
        response = await conn.read_response()
        assert response.status == 431
        assert response.header("connection") == "close"
        assert await conn.is_closed_by_peer(timeout=5.0)
    assert seen == []
    assert server.stats.limit_hits["max_header_size"] == 1


async def test_headers_and_trailers_are_bounded_each_by_the_limit(cyclehttp_server: ServerFactory) -> None:
    app, seen = seen_app()
    server = await cyclehttp_server(app, max_header_size=1024)
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 40) for i in range(12))  # about 700 bytes
    async with await server.raw() as conn:
        await conn.send(chunked_post("/see", b"x", pad, *pad.rstrip().split(b"\r\n")))
        assert (await conn.read_response()).status == 200
    (record,) = seen
    assert len(record["trailers"]) == 12


def test_a_request_built_by_hand_has_no_trailers() -> None:
    request = Request(b"GET", b"/", b"", [(b"Host", b"t")], b"", None, "1.1", None)
    assert len(request.trailers) == 0

"""Request smuggling and framing rules over real sockets.

Every request whose framing is in doubt is refused with ``Connection: close`` and the
connection is closed: a request pipelined behind it is never answered (the bytes after
a badly framed request may be a smuggled request), and a fresh connection is served.
"""

import contextlib

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection


def echo(request: Request) -> bytes:
    return request.body


ROUTES = [("GET", "/", Response.text("Hello, World!")), ("POST", "/echo", echo)]
GET_ROOT = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
POST = b"POST /echo HTTP/1.1\r\nHost: t\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"


async def refused_and_closed(connection: RawConnection, status: int) -> bytes:
    """Read the refusal; then nothing more comes, even for another request, and the server closes."""
    response = await connection.read_response()
    assert response.status == status, response.raw
    assert response.header("connection") == "close"
    with contextlib.suppress(ConnectionError):  # the server may already be gone
        await connection.send(GET_ROOT)
    # is_closed_by_peer is False if any byte arrives first: the pipelined requests got no answer.
    assert await connection.is_closed_by_peer(timeout=5)
    return response.body


async def still_serving(server: TestServer) -> None:
    async with await server.raw() as connection:
        await connection.send(GET_ROOT)
        assert (await connection.read_response()).body == b"Hello, World!"


async def assert_refused(server: TestServer, request: bytes, status: int) -> bytes:
    async with await server.raw() as connection:
        await connection.send(request + GET_ROOT)  # a request pipelined after the bad one
        body = await refused_and_closed(connection, status)
    await still_serving(server)
    return body


CONTENT_LENGTH_CASES = {
    "content-length-and-transfer-encoding": POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "transfer-encoding-and-content-length": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    "two-different-content-lengths": POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "same-content-length-twice": POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "non-numeric": POST + b"Content-Length: abc\r\n\r\n",
    "negative": POST + b"Content-Length: -5\r\n\r\n",
    "plus-sign": POST + b"Content-Length: +5\r\n\r\nhello",
    "hexadecimal": POST + b"Content-Length: 0x5\r\n\r\nhello",
    "list": POST + b"Content-Length: 5, 5\r\n\r\nhello",
    "overflow": POST + b"Content-Length: " + b"9" * 30 + b"\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", CONTENT_LENGTH_CASES.values(), ids=CONTENT_LENGTH_CASES.keys())
async def test_ambiguous_or_invalid_content_length_is_400(cyclehttp_server, request_bytes: bytes) -> None:
    server = await cyclehttp_server(App(ROUTES))
    await assert_refused(server, request_bytes, 400)


TRANSFER_ENCODING_CASES = {
    "gzip": b"Transfer-Encoding: gzip\r\n",
    "identity": b"Transfer-Encoding: identity\r\n",
    "chunked-then-gzip": b"Transfer-Encoding: chunked, gzip\r\n",
    "gzip-then-chunked": b"Transfer-Encoding: gzip, chunked\r\n",  # llhttp itself accepts this one
    "xchunked": b"Transfer-Encoding: xchunked\r\n",
    "chunked-twice-in-one-header": b"Transfer-Encoding: chunked, chunked\r\n",
    "two-headers": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "two-headers-gzip-last": b"Transfer-Encoding: chunked\r\nX-A: b\r\nTransfer-Encoding: gzip\r\n",
    "empty-list-element": b"Transfer-Encoding: , chunked\r\n",  # llhttp itself accepts this one
    "chunk-extension-in-header": b"Transfer-Encoding: chunked;x=1\r\n",
    "trailing-tab": b"Transfer-Encoding: chunked\t\r\n",  # llhttp refuses it; refused as 501 too
}


@pytest.mark.parametrize("header", TRANSFER_ENCODING_CASES.values(), ids=TRANSFER_ENCODING_CASES.keys())
async def test_transfer_encoding_other_than_one_chunked_is_501(cyclehttp_server, header: bytes) -> None:
    server = await cyclehttp_server(App(ROUTES))
    body = await assert_refused(server, POST + header + b"\r\n5\r\nhello\r\n0\r\n\r\n", 501)
    assert b"chunked" in body


CHUNK_CASES = {
    "non-hex-size": b"zz\r\nhello\r\n0\r\n\r\n",
    "negative-size": b"-5\r\nhello\r\n0\r\n\r\n",
    "size-overflow": b"f" * 40 + b"\r\nhello\r\n0\r\n\r\n",
    "data-longer-than-size": b"3\r\nhello\r\n0\r\n\r\n",
    "no-crlf-after-data": b"5\r\nhello0\r\n\r\n",
}


@pytest.mark.parametrize("body", CHUNK_CASES.values(), ids=CHUNK_CASES.keys())
async def test_invalid_chunk_framing_is_400(cyclehttp_server, body: bytes) -> None:
    server = await cyclehttp_server(App(ROUTES))
    await assert_refused(server, CHUNKED + body, 400)


HEAD_CASES = {
    "obs-fold": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b\r\n  c\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b\x00c\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b\rc\r\n\r\n",
    "bare-lf-line-endings": b"GET / HTTP/1.1\nHost: t\n\n",
    "bare-lf-after-one-header": b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
    "invalid-method-char": b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
    "control-char-in-path": b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n",
    "del-in-path": b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n",
    "space-in-path": b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", HEAD_CASES.values(), ids=HEAD_CASES.keys())
async def test_malformed_request_head_is_400(cyclehttp_server, request_bytes: bytes) -> None:
    server = await cyclehttp_server(App(ROUTES))
    await assert_refused(server, request_bytes, 400)


async def test_http10_request_with_transfer_encoding_is_400(cyclehttp_server) -> None:
    # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    server = await cyclehttp_server(App(ROUTES))
    request = b"POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    body = await assert_refused(server, request, 400)
    assert b"HTTP/1.0" in body


@pytest.mark.parametrize(
    "header",
    [b"Transfer-Encoding: chunked", b"transfer-encoding:CHUNKED", b"Transfer-Encoding: \t Chunked  "],
    ids=["canonical", "case-and-no-space", "optional-whitespace"],
)
async def test_one_chunked_transfer_encoding_is_served_and_keeps_the_connection(
    cyclehttp_server, header: bytes
) -> None:
    server = await cyclehttp_server(App(ROUTES))
    async with await server.raw() as connection:
        await connection.send(POST + header + b"\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + GET_ROOT)
        first, second = await connection.read_responses(2)
        assert (first.status, first.body) == (200, b"hello world")
        assert first.header("connection") != "close"
        assert second.body == b"Hello, World!"
        assert not await connection.is_closed_by_peer(timeout=0.2)


async def test_content_length_body_then_pipelined_request_are_both_served(cyclehttp_server) -> None:
    server = await cyclehttp_server(App(ROUTES))
    async with await server.raw() as connection:
        await connection.send(POST + b"Content-Length: 5\r\n\r\nhello" + GET_ROOT)
        first, second = await connection.read_responses(2)
        assert first.body == b"hello"
        assert second.body == b"Hello, World!"

"""End-to-end tests of HttpProtocol over real sockets, through the project's own pytest plugin.

Every test talks to a real server bound to 127.0.0.1 port 0 on the test's loop, with the
strict byte-level ``RawConnection`` client (or httpx), and names the behaviour it checks
the way RFC 9110/9112 state it. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from cyclehttp import App
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection, RawResponse
from examples.hello import routes

Raw = Callable[[], Awaitable[RawConnection]]
ServerFactory = Callable[..., Awaitable[TestServer]]
Connect = Callable[[TestServer], Awaitable[RawConnection]]

HELLO = b"Hello, World!"
GET_ROOT = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"

# RFC 9110 section 5.6.7: IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


@pytest.fixture
def cyclehttp_app() -> App:
    return App(routes)


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: t", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(path: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """``body`` in chunks of the given sizes (the rest in one last chunk), then the last-chunk."""
    out = bytearray()
    pos = 0
    for size in [*sizes, len(body)]:
        piece = body[pos : pos + size]
        if not piece:
            continue
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        pos += len(piece)
    assert pos == len(body)
    return bytes(out) + b"0\r\n\r\n"


def post_chunked(path: str, body: bytes, sizes: list[int]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return head + chunked(body, sizes)


def assert_hello(response: RawResponse) -> None:
    assert response.status == 200, response.raw
    assert response.body == HELLO
    assert response.header("content-length") == str(len(HELLO))


async def assert_closed_after_400(conn: RawConnection) -> RawResponse:
    response = await conn.read_response()
    assert response.status == 400, response.raw
    assert response.header("connection") == "close"
    assert await conn.read_until_closed() == b""
    return response


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


# -- the contract of examples/hello.py ---------------------------------------------------------


async def test_get_root_is_200_text_plain_with_date_and_content_length(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(GET_ROOT)
    response = await conn.read_response()
    assert response.status == 200
    assert response.http_version == "1.1"
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.body == HELLO
    assert response.header("content-length") == "13"
    assert len(response.header_all("date")) == 1
    assert response.header("connection") is None  # HTTP/1.1 persistence is the default
    assert response.header("transfer-encoding") is None


async def test_date_header_is_an_imf_fixdate(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(GET_ROOT + get("/users/1"))
    for response in await conn.read_responses(2):  # static and handler responses
        date = response.header("date")
        assert date is not None
        assert IMF_FIXDATE.fullmatch(date), date
        parsed = parsedate_to_datetime(date)
        assert parsed.utcoffset() == timedelta(0)


async def test_get_json_is_exact_compact_json(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/json"))
    response = await conn.read_response()
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.body == b'{"message":"Hello, World!"}'
    assert response.header("content-length") == str(len(response.body))


async def test_post_echo_with_content_length_is_byte_exact(cyclehttp_raw: Raw) -> None:
    body = bytes(range(256)) + b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"  # request-like bytes inside a body
    conn = await cyclehttp_raw()
    await conn.send(post("/echo", body) + GET_ROOT)
    echoed, hello = await conn.read_responses(2)
    assert echoed.status == 200
    assert echoed.header("content-type") == "application/octet-stream"
    assert echoed.body == body
    assert_hello(hello)


async def test_post_echo_with_chunked_body_is_byte_exact(cyclehttp_raw: Raw) -> None:
    body = b"chunk one|\x00\xff|chunk three\r\n0\r\n\r\n|end"
    conn = await cyclehttp_raw()
    await conn.send(post_chunked("/echo", body, [10, 3, 1, 13]) + GET_ROOT)
    echoed, hello = await conn.read_responses(2)
    assert echoed.status == 200
    assert echoed.body == body
    assert echoed.header("content-length") == str(len(body))
    assert_hello(hello)


async def test_chunked_request_with_extensions_and_trailers_is_decoded(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n" + GET_ROOT
    )
    echoed, hello = await conn.read_responses(2)
    assert echoed.body == b"hello world"
    assert_hello(hello)


async def test_int_path_parameter_is_converted(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/users/7"))
    response = await conn.read_response()
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.body == b'{"id":7}'


async def test_path_parameter_that_does_not_convert_is_404(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/users/abc") + GET_ROOT)
    missing, hello = await conn.read_responses(2)
    assert missing.status == 404
    assert hello.status == 200  # a 404 keeps the connection


async def test_failing_handler_is_500_and_the_same_connection_keeps_serving(
    cyclehttp_raw: Raw, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/error"))
    failed = await conn.read_response()
    assert failed.status == 500
    assert failed.header("connection") is None
    assert b"this handler always fails" not in failed.body  # no internals leak to the client
    await conn.send(GET_ROOT)
    assert_hello(await conn.read_response())
    other = await cyclehttp_raw()
    await other.send(GET_ROOT)
    assert_hello(await other.read_response())
    assert any("failed" in record.getMessage() for record in caplog.records)


async def test_handler_result_that_is_not_json_is_500_and_the_next_request_is_served(
    cyclehttp_server: ServerFactory,
) -> None:
    circular: dict[str, object] = {}
    circular["self"] = circular
    app = App([("GET", "/circular", lambda request: circular), ("GET", "/fine", lambda request: {"ok": 1})])
    server = await cyclehttp_server(app)
    async with await server.raw() as connection:
        await connection.send(
            b"GET /circular HTTP/1.1\r\nHost: t\r\n\r\nGET /fine HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        failed, fine = await connection.read_responses(2, timeout=5)
    assert failed.status == 500
    assert failed.body == b"Internal Server Error"
    assert (fine.status, fine.body) == (200, b'{"ok":1}')
    assert server.stats.handler_exceptions == 1


async def test_async_handler_answers_after_it_awaits(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/sleep/20"))
    response = await conn.read_response()
    assert response.status == 200
    assert response.body == b"slept"


async def test_unknown_path_is_404(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/no/such/path") + GET_ROOT)
    missing, hello = await conn.read_responses(2)
    assert missing.status == 404
    assert missing.body == b"Not Found"
    assert_hello(hello)


async def test_method_not_allowed_is_405_with_allow(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" + GET_ROOT)
    refused, hello = await conn.read_responses(2)
    assert refused.status == 405
    assert refused.header("allow") == "GET, HEAD"
    assert_hello(hello)  # the 405's body was consumed, not parsed as a request


async def test_head_has_the_get_headers_and_no_body(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(GET_ROOT)
    got = await conn.read_response()
    await conn.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + GET_ROOT)
    head = await conn.read_response(head=True)
    assert head.status == 200
    assert head.header("content-length") == "13"
    assert [n.lower() for n, _ in head.headers] == [n.lower() for n, _ in got.headers]
    assert dict(head.headers).get("Content-Type") == dict(got.headers).get("Content-Type")
    assert head.body == b""
    # Had the HEAD response carried a body, the next response would not parse.
    assert_hello(await conn.read_response())


async def test_head_on_a_dynamic_get_route_has_no_body(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(b"HEAD /users/7 HTTP/1.1\r\nHost: t\r\n\r\n" + get("/users/8"))
    head = await conn.read_response(head=True)
    assert head.status == 200
    assert head.header("content-type") == "application/json"
    assert head.header("content-length") == str(len(b'{"id":7}'))
    user = await conn.read_response()
    assert user.body == b'{"id":8}'


async def test_head_on_an_async_route_has_no_body(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(b"HEAD /sleep/5 HTTP/1.1\r\nHost: t\r\n\r\n" + GET_ROOT)
    head = await conn.read_response(head=True)
    assert head.status == 200
    assert head.header("content-length") == "5"
    assert_hello(await conn.read_response())


async def test_query_string_does_not_change_routing(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/users/5?x=1") + get("/?a=b&c") + get("/json?"))
    user, hello, json_ = await conn.read_responses(3)
    assert user.json() == {"id": 5}
    assert_hello(hello)
    assert json_.body == b'{"message":"Hello, World!"}'


async def test_absolute_form_target_is_routed_by_its_path(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(
        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"
        b"GET http://example.com:8080/users/3?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    hello, user = await conn.read_responses(2)
    assert_hello(hello)
    assert user.json() == {"id": 3}


async def test_httpx_client_sees_the_same_contract(cyclehttp_client: httpx.AsyncClient) -> None:
    root = await cyclehttp_client.get("/")
    assert root.status_code == 200
    assert root.content == HELLO
    echoed = await cyclehttp_client.post("/echo", content=b"x" * 1000)
    assert echoed.content == b"x" * 1000
    head = await cyclehttp_client.head("/")
    assert head.headers["content-length"] == "13"
    assert head.content == b""


# -- persistence and pipelining ----------------------------------------------------------------


async def test_one_connection_serves_100_sequential_requests(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    for i in range(100):
        request = GET_ROOT if i % 2 else get(f"/users/{i}")
        await conn.send(request)
        response = await conn.read_response()
        assert response.status == 200, (i, response.raw)
        assert response.header("connection") is None
        if i % 2:
            assert response.body == HELLO
        else:
            assert response.json() == {"id": i}
    assert not await conn.is_closed_by_peer(timeout=0.1)


async def test_50_pipelined_requests_behind_a_slow_one_are_answered_in_order(cyclehttp_raw: Raw) -> None:
    # More than max_pipelined_requests (32): reading pauses and resumes while they queue.
    conn = await cyclehttp_raw()
    await conn.send(get("/sleep/50") + b"".join(get(f"/users/{i}") for i in range(1, 50)))
    responses = await conn.read_responses(50, timeout=10)
    assert responses[0].body == b"slept"
    assert [r.json() for r in responses[1:]] == [{"id": i} for i in range(1, 50)]
    await conn.send(GET_ROOT)
    assert_hello(await conn.read_response())


async def test_pipeline_beyond_the_queue_limit_is_answered_in_order(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(routes, max_pipelined_requests=2)
    conn = await connect(server)
    requests = [get(f"/sleep/{1 + i % 3}") if i % 2 else get(f"/users/{i}") for i in range(40)]
    await conn.send(b"".join(requests))
    responses = await conn.read_responses(40, timeout=10)
    for i, response in enumerate(responses):
        assert response.body == (b"slept" if i % 2 else b'{"id":%d}' % i), i


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_mixed_async_and_sync_pipeline_split_at_arbitrary_boundaries(
    cyclehttp_raw: Raw, seed: int
) -> None:
    rng = random.Random(seed)
    expected: list[tuple[int, bytes]] = []
    wire = bytearray()
    for i in range(30):
        kind = rng.randrange(6)
        if kind == 0:
            wire += get(f"/sleep/{rng.randrange(0, 4)}")
            expected.append((200, b"slept"))
        elif kind == 1:
            wire += get(f"/users/{i}")
            expected.append((200, b'{"id":%d}' % i))
        elif kind == 2:
            wire += GET_ROOT
            expected.append((200, HELLO))
        elif kind == 3:
            body = rng.randbytes(rng.randrange(0, 300))
            wire += post("/echo", body) if rng.random() < 0.5 else post_chunked("/echo", body, [7, 1, 50])
            expected.append((200, body))
        elif kind == 4:
            wire += get("/error")
            expected.append((500, b"Internal Server Error"))
        else:
            wire += get(f"/nope/{i}")
            expected.append((404, b"Not Found"))
    conn = await cyclehttp_raw()
    cuts = sorted(rng.sample(range(1, len(wire)), 60))
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        await conn.send(bytes(wire[start:end]))
        if rng.random() < 0.3:
            await asyncio.sleep(0)  # let some pieces arrive in reads of their own
    responses = await conn.read_responses(len(expected), timeout=10)
    assert [(r.status, r.body) for r in responses] == expected
    assert not await conn.is_closed_by_peer(timeout=0.05)


async def test_request_sent_one_byte_at_a_time_is_parsed(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send_slowly(post("/echo", b"slow body") + get("/users/9"))
    echoed, user = await conn.read_responses(2)
    assert echoed.body == b"slow body"
    assert user.json() == {"id": 9}


async def test_chunked_request_sent_one_byte_at_a_time_is_parsed(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send_slowly(post_chunked("/echo", b"abcdefghij", [3, 3]) + GET_ROOT)
    echoed, hello = await conn.read_responses(2)
    assert echoed.body == b"abcdefghij"
    assert_hello(hello)


async def test_one_mebibyte_body_is_echoed_byte_exact(cyclehttp_raw: Raw) -> None:
    body = random.Random(7).randbytes(1 << 20)
    conn = await cyclehttp_raw()
    await conn.send(post("/echo", body) + GET_ROOT)
    echoed, hello = await conn.read_responses(2, timeout=15)
    assert echoed.header("content-length") == str(1 << 20)
    assert echoed.body == body
    assert_hello(hello)


async def test_chunked_body_of_many_chunks_is_echoed_byte_exact(cyclehttp_raw: Raw) -> None:
    rng = random.Random(11)
    body = rng.randbytes(200_000)
    sizes = [rng.randrange(1, 600) for _ in range(2000)]
    conn = await cyclehttp_raw()
    await conn.send(post_chunked("/echo", body, sizes) + GET_ROOT)
    echoed, hello = await conn.read_responses(2, timeout=15)
    assert echoed.body == body
    assert_hello(hello)


# -- connection management (RFC 9112 section 9) ------------------------------------------------


async def test_http10_without_keep_alive_is_answered_then_closed(cyclehttp_raw: Raw) -> None:
    for request in (b"GET / HTTP/1.0\r\n\r\n", b"GET /users/4 HTTP/1.0\r\n\r\n"):
        conn = await cyclehttp_raw()
        await conn.send(request)
        response = await conn.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert response.header("content-length") is not None
        assert await conn.read_until_closed() == b""


async def test_http10_keep_alive_is_acknowledged_and_the_connection_persists(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    for request in (
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /users/2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        b"GET /sleep/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ):
        await conn.send(request)
        response = await conn.read_response()
        assert response.status == 200, response.raw
        assert response.header("connection") == "keep-alive"
    assert not await conn.is_closed_by_peer(timeout=0.1)
    await conn.send(b"GET / HTTP/1.0\r\n\r\n")
    last = await conn.read_response()
    assert last.header("connection") == "close"
    assert await conn.read_until_closed() == b""


@pytest.mark.parametrize("path", ["/", "/users/1", "/sleep/1", "/nope", "/error"])
async def test_connection_close_is_echoed_and_later_requests_are_not_answered(
    cyclehttp_raw: Raw, path: str
) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get(path, "Connection: close") + GET_ROOT + get("/users/2"))
    response = await conn.read_response()
    assert response.status in (200, 404, 500)
    assert response.header("connection") == "close"
    assert await conn.read_until_closed() == b""


async def test_connection_close_after_pipelined_requests_answers_all_before_it(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/sleep/10") + get("/users/1") + get("/", "Connection: close") + GET_ROOT)
    slept, user, last = await conn.read_responses(3)
    assert slept.body == b"slept"
    assert slept.header("connection") is None
    assert user.json() == {"id": 1}
    assert_hello(last)
    assert last.header("connection") == "close"
    assert await conn.read_until_closed() == b""


async def half_closed(server: TestServer, data: bytes) -> RawConnection:
    """Send ``data`` and shut down the write side (FIN); the read side stays open."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), 5)
    conn = RawConnection(reader, writer, timeout=5)
    writer.write(data)
    writer.write_eof()
    await asyncio.wait_for(writer.drain(), 5)
    return conn


@pytest.mark.parametrize("path", ["/", "/users/3", "/sleep/20"])
async def test_requests_before_a_client_half_close_are_still_answered(
    cyclehttp_server: ServerFactory, path: str
) -> None:
    # A FIN ends what the client sends, not what it will read (RFC 9112 section 9.6).
    server = await cyclehttp_server(routes)
    async with await half_closed(server, get(path) + get("/sleep/1") + GET_ROOT) as conn:
        first, slept, hello = await conn.read_responses(3)
        assert first.status == 200
        assert slept.body == b"slept"
        assert_hello(hello)
        assert await conn.read_until_closed() == b""


async def test_half_close_in_the_middle_of_a_request_closes_after_earlier_answers(
    cyclehttp_server: ServerFactory,
) -> None:
    server = await cyclehttp_server(routes)
    async with await half_closed(server, get("/sleep/10") + b"GET /users/1 HTTP/1.1\r\nHo") as conn:
        slept = await conn.read_response()
        assert slept.body == b"slept"
        assert await conn.read_until_closed() == b""


async def test_half_close_when_idle_closes_the_connection(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(routes)
    async with await half_closed(server, b"") as conn:
        assert await conn.is_closed_by_peer(timeout=5)
    await wait_for(lambda: server.stats.connections_closed == 1)


# -- malformed requests (RFC 9112 sections 2.2, 3, 6.3) ----------------------------------------

MALFORMED = {
    "garbage": b"\x00\x01\x02 this is not http \xff\r\n\r\n",
    "bad_header_line": b"GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
    "invalid_content_length": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    "negative_content_length": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "duplicate_content_length": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "content_length_and_transfer_encoding": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bad_chunk_size": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "http09_request_line": b"GET /\r\n\r\n",
    "relative_target": b"GET users HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_request_is_400_then_close_and_the_server_keeps_serving(
    cyclehttp_raw: Raw, request_bytes: bytes
) -> None:
    conn = await cyclehttp_raw()
    await conn.send(request_bytes)
    response = await assert_closed_after_400(conn)
    assert response.header("content-type") == "text/plain; charset=utf-8"
    fresh = await cyclehttp_raw()
    await fresh.send(GET_ROOT)
    assert_hello(await fresh.read_response())


async def test_http11_request_without_host_is_400(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(b"GET / HTTP/1.1\r\n\r\n")
    response = await assert_closed_after_400(conn)
    assert b"missing Host" in response.body


async def test_request_with_two_host_headers_is_400(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")
    response = await assert_closed_after_400(conn)
    assert b"more than one Host" in response.body


async def test_http10_request_without_host_is_served(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(b"GET / HTTP/1.0\r\n\r\n")
    assert_hello(await conn.read_response())


async def test_body_sent_to_a_static_route_is_consumed_not_parsed(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    smuggled = b"GET /users/666 HTTP/1.1\r\nHost: t\r\n\r\n"
    await conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
    await conn.send(get("/users/1"))
    hello, user = await conn.read_responses(2)
    assert_hello(hello)
    assert user.json() == {"id": 1}


async def test_http10_proxy_connection_keep_alive_is_http10_keep_alive(cyclehttp_raw: Raw) -> None:
    """llhttp reads Proxy-Connection like Connection: the answer must still be HTTP/1.0 keep-alive."""
    conn = await cyclehttp_raw()
    for path in ("/", "/users/3"):
        await conn.send(f"GET {path} HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n".encode())
        response = await conn.read_response()
        assert response.status == 200, response.raw  # no Host needed: HTTP/1.0
        assert response.header("connection") == "keep-alive"
    assert not await conn.is_closed_by_peer(timeout=0.1)


@pytest.mark.parametrize("header", ["Connection: keep-alive", "Proxy-Connection: keep-alive", ""])
async def test_http2_request_line_is_505_whatever_its_connection_header(
    cyclehttp_raw: Raw, header: str
) -> None:
    conn = await cyclehttp_raw()
    await conn.send(
        b"GET / HTTP/2.0\r\nHost: t\r\n" + (header.encode() + b"\r\n" if header else b"") + b"\r\n"
    )
    response = await conn.read_response()
    assert response.status == 505
    assert await conn.read_until_closed() == b""


async def test_unsupported_http_version_is_505_then_close(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n")
    response = await conn.read_response()
    assert response.status == 505
    assert response.header("connection") == "close"
    assert await conn.read_until_closed() == b""
    fresh = await cyclehttp_raw()
    await fresh.send(GET_ROOT)
    assert_hello(await fresh.read_response())


async def test_valid_request_pipelined_before_garbage_is_answered_first(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(GET_ROOT + b"\x01\x02garbage\r\n\r\n")
    assert_hello(await conn.read_response())
    await assert_closed_after_400(conn)


async def test_async_request_pipelined_before_garbage_is_answered_first(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/sleep/20") + get("/users/1") + b"NOT HTTP\r\n\r\n")
    slept, user = await conn.read_responses(2)
    assert slept.body == b"slept"
    assert user.json() == {"id": 1}
    await assert_closed_after_400(conn)


async def test_garbage_after_a_split_read_is_still_rejected_in_order(cyclehttp_raw: Raw) -> None:
    conn = await cyclehttp_raw()
    await conn.send(get("/sleep/20"))
    await conn.send(b"\x00garbage\r\n\r\n")
    slept = await conn.read_response()
    assert slept.body == b"slept"
    await assert_closed_after_400(conn)


# -- what the server keeps about itself --------------------------------------------------------


async def test_stats_count_requests_and_closed_connections(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(App(routes))
    connections, per_connection = 4, 3
    for _ in range(connections):
        conn = await connect(server)
        await conn.send(GET_ROOT + get("/users/1") + get("/sleep/1"))
        await conn.read_responses(per_connection)
        await conn.close()
    await wait_for(lambda: server.stats.connections_closed == connections)
    stats = server.stats
    assert stats.connections_accepted == connections
    assert stats.connections_open == 0
    assert stats.requests == connections * per_connection
    assert stats.connection_lifetime.count == connections
    assert stats.connection_lifetime.min_ns > 0


async def test_stats_count_connections_the_server_closes(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(App(routes))
    for request in (get("/", "Connection: close"), b"garbage\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"):
        conn = await connect(server)
        await conn.send(request)
        await conn.read_until_closed()
        await conn.close()
    await wait_for(lambda: server.stats.connections_closed == 3)
    assert server.stats.connection_lifetime.count == 3
    assert server.stats.requests == 3


async def test_client_disconnecting_during_an_async_handler_leaves_no_task(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(App(routes))
    baseline = len(asyncio.all_tasks())
    conn = await connect(server)
    await conn.send(get("/sleep/500") + GET_ROOT)
    await wait_for(lambda: len(asyncio.all_tasks()) > baseline)  # the handler is running
    await conn.close()
    # A FIN may be a half-close: the handler finishes, its answer is dropped, nothing is left.
    await wait_for(lambda: len(asyncio.all_tasks()) == baseline, timeout=3)
    await wait_for(lambda: server.stats.connections_closed == 1)
    fresh = await connect(server)
    await fresh.send(get("/sleep/1") + GET_ROOT)
    slept, hello = await fresh.read_responses(2)
    assert slept.body == b"slept"
    assert_hello(hello)


async def test_server_shutdown_answers_a_request_in_flight_with_connection_close(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(App(routes))
    conn = await connect(server)
    idle = await connect(server)
    await idle.send(GET_ROOT)
    assert_hello(await idle.read_response())
    await conn.send(get("/sleep/100"))
    connections = server.server.state.connections
    await wait_for(lambda: any(not c.is_idle() for c in connections))  # the handler is running
    closing = asyncio.ensure_future(server.close(timeout=5))
    response = await conn.read_response()
    assert response.body == b"slept"
    assert response.header("connection") == "close"
    assert await conn.read_until_closed() == b""
    assert await idle.read_until_closed() == b""
    await asyncio.wait_for(closing, 5)


async def test_client_reset_during_an_async_handler_cancels_it(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(App(routes))
    baseline = len(asyncio.all_tasks())
    _, writer = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), 5)
    writer.write(get("/sleep/5000"))
    await asyncio.wait_for(writer.drain(), 5)
    await wait_for(lambda: len(asyncio.all_tasks()) > baseline)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST: the client is gone for good
    await wait_for(lambda: len(asyncio.all_tasks()) == baseline, timeout=1)  # cancelled, not awaited
    await wait_for(lambda: server.stats.connections_closed == 1)

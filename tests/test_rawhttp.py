"""Tests for cyclehttp.rawhttp against tiny canned-byte asyncio servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import pytest

from cyclehttp.testing.rawclient import (
    MAX_HEAD,
    ConnectionClosed,
    MalformedResponse,
    RawConnection,
    RawResponse,
    request,
)

HOST = "127.0.0.1"
GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    """Run ``handler`` per connection on an ephemeral port; tear everything down after."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(on_connect, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


def canned(*writes: bytes, close: bool = True, delay: float = 0.0) -> Handler:
    """A handler that reads one request head, sends ``writes`` in order, then closes
    (or, with ``close=False``, waits for the client to go away)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        for i, data in enumerate(writes):
            if i and delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
        if not close:
            await reader.read()

    return handler


@asynccontextmanager
async def connected(handler: Handler, *, timeout: float = 5.0) -> AsyncIterator[RawConnection]:
    """Serve ``handler`` and yield a RawConnection to it."""
    async with serve(handler) as port, await RawConnection.open(HOST, port, timeout=timeout) as c:
        yield c


async def one(handler: Handler, *, head: bool = False, timeout: float = 5.0) -> RawResponse:
    async with serve(handler) as port:
        return await request(HOST, port, GET, head=head, timeout=timeout)


CL_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


@pytest.mark.asyncio
async def test_content_length_body() -> None:
    resp = await one(canned(CL_RESPONSE, close=False))
    assert (resp.status, resp.reason, resp.http_version) == (200, "OK", "1.1")
    assert resp.headers == (("Content-Type", "text/plain"), ("Content-Length", "5"))
    assert resp.body == b"hello"
    assert resp.text == "hello"
    assert resp.raw == CL_RESPONSE
    assert resp.trailers == ()


@pytest.mark.asyncio
async def test_chunked_body_with_trailers() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: abc\r\nX-Other:  two \r\n\r\n"
    )
    async with connected(canned(wire + b"HTTP/1.1 204 No Content\r\n\r\n", close=False)) as conn:
        await conn.send(GET)
        resp = await conn.read_response()
        assert resp.body == b"hello, world"
        assert resp.trailers == (("X-Sum", "abc"), ("X-Other", "two"))
        assert resp.raw == wire
        assert (await conn.read_response()).status == 204


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk-size line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "not followed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "final transfer"),
    ],
)
async def test_bad_chunked_framing_is_malformed(wire: bytes, match: str) -> None:
    with pytest.raises(MalformedResponse, match=match):
        await one(canned(wire, close=False))


@pytest.mark.asyncio
async def test_close_delimited_body() -> None:
    wire = b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\npart one, "
    resp = await one(canned(wire, b"part two", delay=0.05))
    assert resp.http_version == "1.0"
    assert resp.body == b"part one, part two"
    assert resp.raw == wire + b"part two"


@pytest.mark.asyncio
async def test_two_pipelined_responses_in_one_write() -> None:
    second = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc"
    async with connected(canned(CL_RESPONSE + second, close=False)) as conn:
        await conn.send(GET + GET)
        first, other = await conn.read_responses(2)
        assert (first.status, first.body, first.raw) == (200, b"hello", CL_RESPONSE)
        assert (other.status, other.reason, other.body, other.raw) == (
            201,
            "Created",
            b"abc",
            second,
        )
        assert not await conn.is_closed_by_peer(timeout=0.1)


@pytest.mark.asyncio
async def test_pipelined_responses_split_byte_by_byte() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    wire = CL_RESPONSE + chunked
    async with connected(canned(*(wire[i : i + 1] for i in range(len(wire))), delay=0.001)) as conn:
        await conn.send_slowly(GET, chunk_size=3)
        first = await conn.read_response()
        second = await conn.read_response()
        assert (first.body, first.raw) == (b"hello", CL_RESPONSE)
        assert (second.body, second.raw) == (b"xyz", chunked)
        assert await conn.is_closed_by_peer()


@pytest.mark.asyncio
async def test_send_slowly_delivers_exact_bytes() -> None:
    request_bytes = GET.replace(b"\r\n\r\n", b"\r\nContent-Length: 4\r\n\r\nping")

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await read_head(reader)
        data += await asyncio.wait_for(reader.readexactly(4), 5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        await writer.drain()

    async with connected(echo) as conn:
        await conn.send_slowly(request_bytes, chunk_size=2, delay=0.001)
        assert (await conn.read_response()).body == request_bytes
        with pytest.raises(ValueError, match="chunk_size"):
            await conn.send_slowly(b"x", chunk_size=0)


@pytest.mark.asyncio
async def test_head_response_has_no_body() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    async with connected(canned(wire + CL_RESPONSE, close=False)) as conn:
        await conn.send(GET)
        resp = await conn.read_response(head=True)
        assert (resp.header("content-length"), resp.body, resp.raw) == ("1234", b"", wire)
        assert (await conn.read_response()).raw == CL_RESPONSE


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [100, 204, 304])
async def test_bodyless_statuses(status: int) -> None:
    wire = b"HTTP/1.1 %d Whatever\r\nContent-Length: 10\r\n\r\n" % status
    resp = await one(canned(wire + CL_RESPONSE, close=False))
    assert (resp.status, resp.body, resp.raw) == (status, b"", wire)


@pytest.mark.asyncio
async def test_empty_reason_is_allowed() -> None:
    resp = await one(canned(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", close=False))
    assert (resp.status, resp.reason, resp.body) == (200, "", b"")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"HTTP/1.1 OK 200\r\n\r\n", "status line"),
        (b"HTTP/1.1 200\r\n\r\n", "status line"),
        (b"HTTP/2 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "No colon here"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "duplicate"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both",
        ),
    ],
)
async def test_malformed_heads(wire: bytes, match: str) -> None:
    with pytest.raises(MalformedResponse, match=match):
        await one(canned(wire, close=False))


@pytest.mark.asyncio
async def test_malformed_status_line_detected_before_head_ends() -> None:
    with pytest.raises(MalformedResponse, match="garbage"):
        await one(canned(b"garbage\r\n", close=False), timeout=2)


@pytest.mark.asyncio
async def test_head_over_cap_is_malformed() -> None:
    wire = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    with pytest.raises(MalformedResponse, match="too long"):
        await one(canned(wire, close=False))


@pytest.mark.asyncio
async def test_early_close_raises_connection_closed_with_partial() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    with pytest.raises(ConnectionClosed) as info:
        await one(canned(wire))
    assert info.value.partial == wire
    assert isinstance(info.value, ConnectionError)
    assert "10-byte body" in str(info.value)


@pytest.mark.asyncio
async def test_close_before_any_byte() -> None:
    with pytest.raises(ConnectionClosed) as info:
        await one(canned())
    assert info.value.partial == b""


@pytest.mark.asyncio
async def test_silent_server_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError, match="status line"):
        await one(canned(close=False), timeout=0.3)
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_timeout_message_shows_partial_bytes() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    async with connected(canned(wire, close=False), timeout=0.3) as conn:
        await conn.send(GET)
        with pytest.raises(TimeoutError) as info:
            await conn.read_response()
        assert "10-byte body" in str(info.value)
        assert repr(wire) in str(info.value)
        with pytest.raises(TimeoutError, match="close"):
            await conn.read_until_closed(timeout=0.1)


@pytest.mark.asyncio
async def test_is_closed_by_peer() -> None:
    async with connected(canned(CL_RESPONSE)) as conn:
        await conn.send(GET)
        await conn.read_response()
        assert await conn.is_closed_by_peer(timeout=2)
        assert await conn.is_closed_by_peer(timeout=2)  # still closed, answers at once

    async with connected(canned(CL_RESPONSE, close=False)) as conn:
        await conn.send(GET)
        await conn.read_response()
        started = time.monotonic()
        assert not await conn.is_closed_by_peer(timeout=0.2)
        assert 0.15 < time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_is_closed_by_peer_keeps_arriving_data() -> None:
    async with connected(canned(CL_RESPONSE)) as conn:
        await conn.send(GET)
        assert not await conn.is_closed_by_peer()
        assert (await conn.read_response()).raw == CL_RESPONSE
        assert await conn.is_closed_by_peer()


@pytest.mark.asyncio
async def test_read_until_closed_returns_buffered_and_rest() -> None:
    tail = b"trailing junk"
    async with connected(canned(CL_RESPONSE + b"HTTP/1.1", b" 200 OK\r\n", tail, delay=0.02)) as conn:
        await conn.send(GET)
        assert (await conn.read_response()).body == b"hello"
        assert await conn.read_until_closed() == b"HTTP/1.1 200 OK\r\n" + tail
        assert await conn.read_until_closed() == b""


@pytest.mark.asyncio
async def test_header_lookup_is_case_insensitive() -> None:
    wire = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Thing: x\r\nset-COOKIE: b=2\r\nContent-Length: 0\r\n\r\n"
    resp = await one(canned(wire, close=False))
    assert resp.header("SET-COOKIE") == "a=1"
    assert resp.header("x-thing") == "x"
    assert resp.header("missing") is None
    assert resp.header("missing", "dflt") == "dflt"
    assert resp.header_all("Set-Cookie") == ["a=1", "b=2"]
    assert resp.header_all("missing") == []
    assert resp.headers[2] == ("set-COOKIE", "b=2")


@pytest.mark.asyncio
async def test_json_and_text() -> None:
    body = '{"a": [1, 2], "b": "é"}'.encode()
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s\xff" % (len(body) + 1, body)
    resp = await one(canned(wire, close=False))
    assert resp.text.endswith('é"}\ufffd')
    trimmed = RawResponse(resp.status, resp.reason, resp.http_version, resp.headers, body, b"")
    assert trimmed.json() == {"a": [1, 2], "b": "é"}


@pytest.mark.asyncio
async def test_open_rejects_bad_timeout_and_close_is_idempotent() -> None:
    with pytest.raises(ValueError, match="timeout"):
        await RawConnection.open(HOST, 1, timeout=0)
    async with serve(canned(CL_RESPONSE)) as port:
        conn = await RawConnection.open(HOST, port)
        await conn.close()
        await conn.close()

"""Request bodies streamed to the handler (``stream_body=True``) and ``Expect: 100-continue``.

What is checked, over real sockets: a 50 MiB upload hashed as it arrives in
bounded memory; a slow reader pauses the transport; ``max_body_size`` and
``body_timeout`` while streaming (the server answers 413/408, the handler sees
``HTTPError``); chunked uploads; a client leaving mid-upload (the handler gets
``ClientDisconnected``, no task is left); pipelined requests after a streamed
one, in order; a handler returning early (its answer closes the connection);
``request.body`` and ``read()``; 100 Continue sent when the body is wanted,
the final status instead of it when the request is refused, 417, HTTP/1.0.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from cyclehttp import App, ClientDisconnected, HTTPError, Request, Response, RouteError
from cyclehttp.cycle.request_stream import STREAM_BUFFER
from tests.serverside import the_connection, wait_for

_PAUSED_BODY = 4
MIB = 1024 * 1024


def post(path: str, body: bytes = b"", *, headers: str = "", version: str = "1.1") -> bytes:
    head = f"POST {path} HTTP/{version}\r\nHost: t\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def make_app(seen: list[object] | None = None) -> App:
    app = App()
    app.add_route("GET", "/", Response.text("Hello, World!"))

    @app.post("/hash", stream_body=True)
    async def hash_body(request: Request) -> dict[str, object]:
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
        except (HTTPError, ClientDisconnected) as exc:
            if seen is not None:
                seen.append(exc)
            raise
        return {"sha256": digest.hexdigest(), "size": size}

    @app.post("/echo")
    def echo(request: Request) -> bytes:
        return request.body

    @app.put("/read", stream_body=True)
    async def read_all(request: Request) -> bytes:
        try:
            request.body  # noqa: B018 - must raise before the body is read
        except RuntimeError as exc:
            assert "request.stream()" in str(exc)
        else:
            raise AssertionError("request.body before read() must raise")
        body = await request.read()
        assert request.body == body
        return body

    @app.post("/early", stream_body=True)
    async def early(request: Request) -> str:
        return "not interested"

    return app


def test_stream_body_needs_an_async_handler() -> None:
    with pytest.raises(RouteError, match="async handler"):
        App().add_route("POST", "/x", lambda request: b"", stream_body=True)
    with pytest.raises(RouteError, match="needs a handler"):
        App().add_route("POST", "/x", Response.text("x"), stream_body=True)


async def test_a_50_mib_upload_is_hashed_in_bounded_memory(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app(), max_body_size=64 * MIB)
    piece = os.urandom(MIB)
    total = 50
    expected = hashlib.sha256()
    for _ in range(total):
        expected.update(piece)
    async with await server.raw(timeout=30) as connection:
        await connection.send(post("/hash", piece))  # warm up: first allocations, buffers
        assert (await connection.read_response()).status == 200
        before = rss()
        await connection.send(
            f"POST /hash HTTP/1.1\r\nHost: t\r\nContent-Length: {total * MIB}\r\n\r\n".encode()
        )
        for _ in range(total):
            await connection.send(piece)
        response = await connection.read_response()
        grown = rss() - before
    assert response.status == 200
    assert response.json() == {"sha256": expected.hexdigest(), "size": total * MIB}
    assert grown < 16 * MIB, f"the server grew by {grown / MIB:.1f} MiB for a streamed 50 MiB upload"


async def test_a_slow_reader_pauses_the_transport(cyclehttp_server) -> None:
    release = asyncio.Event()
    buffered: list[int] = []

    async def slow(request: Request) -> str:
        stream = request.stream()
        size = len(await stream.read_chunk())
        await release.wait()
        buffered.append(stream.buffered)
        async for chunk in stream:
            size += len(chunk)
        return str(size)

    app = App()
    app.add_route("POST", "/slow", slow, stream_body=True)
    server = await cyclehttp_server(app, max_body_size=64 * MIB)
    async with await server.raw(timeout=10) as connection:
        size = 8 * MIB
        await connection.send(f"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n".encode())
        sending = asyncio.ensure_future(connection.send(b"x" * size))
        protocol = await the_connection(server)
        await wait_for(lambda: protocol._paused & _PAUSED_BODY, what="reading paused for the body")
        await asyncio.sleep(0.1)
        assert not sending.done()  # the client is held back: the server buffers no more
        release.set()
        await sending
        response = await connection.read_response()
    assert response.body == str(size).encode()
    # What the stream held while the handler did not read: its bound plus a read or two.
    assert buffered[0] < STREAM_BUFFER + 1 * MIB


async def test_body_over_the_limit_while_streaming_is_413(cyclehttp_server) -> None:
    seen: list[object] = []
    server = await cyclehttp_server(make_app(seen), max_body_size=100_000)
    async with await server.raw() as connection:
        await connection.send(b"POST /hash HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        await connection.send(chunked(b"a" * 60_000, b"b" * 60_000))
        response = await connection.read_response()
        assert response.status == 413
        assert response.header("connection") == "close"
        assert await connection.is_closed_by_peer(timeout=5)
    assert len(seen) == 1 and isinstance(seen[0], HTTPError) and seen[0].status == 413
    assert server.stats.limit_hits["max_body_size"] == 1


async def test_a_stalled_streamed_body_is_408(cyclehttp_server) -> None:
    seen: list[object] = []
    server = await cyclehttp_server(make_app(seen), body_timeout=0.5)
    async with await server.raw() as connection:
        await connection.send(post("/hash", b"x" * 1000)[:-500])  # half the body, then silence
        response = await connection.read_response(timeout=5)
        assert response.status == 408
    assert isinstance(seen[0], HTTPError) and seen[0].status == 408


async def test_chunked_upload_then_pipelined_requests_in_order(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app())
    pieces = [os.urandom(n) for n in (1, 1000, 70_000, 5)]
    body = b"".join(pieces)
    async with await server.raw() as connection:
        await connection.send(
            b"POST /hash HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(*pieces)
            + post("/echo", b"second")
            + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
            + post("/hash", b"fourth")
        )
        first, second, third, fourth = await connection.read_responses(4)
    assert first.json() == {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    assert second.body == b"second"
    assert third.body == b"Hello, World!"
    assert fourth.json()["size"] == 6


async def test_a_client_leaving_mid_upload_ends_the_handler(cyclehttp_server) -> None:
    seen: list[object] = []
    server = await cyclehttp_server(make_app(seen))
    connection = await server.raw()
    await connection.send(post("/hash", b"x" * 10_000)[:-5000])
    protocol = await the_connection(server)
    await wait_for(lambda: protocol._busy is not None, what="the handler running")
    task = protocol._busy
    await connection.close()
    await wait_for(lambda: seen, what="the handler seeing the disconnect")
    assert isinstance(seen[0], ClientDisconnected)
    await wait_for(lambda: task.done(), what="the handler's task to end")
    await wait_for(lambda: not server.server.state.connections, what="the connection to close")
    assert protocol._busy is None
    assert server.stats.handler_exceptions == 0


async def test_a_handler_returning_early_closes_the_connection(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app())
    async with await server.raw() as connection:
        await connection.send(post("/early", b"x" * 500_000)[:-100_000])
        response = await connection.read_response()
        assert response.body == b"not interested"
        assert response.header("connection") == "close"
        await connection.send(b"y" * 100_000)  # the rest is read and dropped, not reset
        assert await connection.is_closed_by_peer(timeout=5)
    async with await server.raw() as connection:
        await connection.send(post("/early", b"small") + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        first, second = await connection.read_responses(2)  # the whole body came: keep-alive
        assert first.header("connection") is None and second.body == b"Hello, World!"


async def test_read_gives_the_body_and_then_request_body(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app())
    async with await server.raw() as connection:
        await connection.send(post("/read", b"whole body").replace(b"POST", b"PUT", 1))
        assert (await connection.read_response()).body == b"whole body"


# -- Expect: 100-continue ------------------------------------------------------


async def test_100_continue_then_the_answer_for_a_buffered_route(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app())
    async with await server.raw() as connection:
        await connection.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await connection.read_response(timeout=2)  # the client waits for it
        assert interim.status == 100 and interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        await connection.send(b"hello")
        final = await connection.read_response()
        assert final.status == 200 and final.body == b"hello"
        await connection.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # still keep-alive
        assert (await connection.read_response()).status == 200
    assert server.stats.requests_by_status["1xx"] == 0


async def test_curl_like_flow_on_a_streaming_route(cyclehttp_server) -> None:
    started = asyncio.Event()
    reading = asyncio.Event()

    async def upload(request: Request) -> str:
        started.set()
        await reading.wait()
        return str(len(await request.read()))

    app = App()
    app.add_route("PUT", "/up", upload, stream_body=True)
    server = await cyclehttp_server(app)
    async with await server.raw() as connection:
        await connection.send(
            b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n"
        )
        await asyncio.wait_for(started.wait(), 2)
        with pytest.raises(TimeoutError):  # no 100 before the handler reads
            await connection.read_response(timeout=0.2)
        reading.set()
        assert (await connection.read_response(timeout=2)).status == 100
        await connection.send(b"abc")
        assert (await connection.read_response()).body == b"3"


async def test_an_oversized_content_length_gets_413_instead_of_100(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app(), max_body_size=1000)
    async with await server.raw() as connection:
        await connection.send(
            b"POST /hash HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        )
        response = await connection.read_response(timeout=2)
        assert response.status == 413
        assert await connection.is_closed_by_peer(timeout=5)


async def test_an_unknown_path_gets_404_instead_of_100(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app())
    async with await server.raw() as connection:
        await connection.send(
            b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        response = await connection.read_response(timeout=2)
        assert response.status == 404
        assert response.header("connection") == "close"
        assert await connection.is_closed_by_peer(timeout=5)
    async with await server.raw() as connection:  # a known path, wrong method: 405 with Allow
        await connection.send(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        response = await connection.read_response(timeout=2)
        assert response.status == 405 and response.header("allow") == "POST"


async def test_an_unknown_expectation_is_417(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app())
    async with await server.raw() as connection:
        await connection.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: teapot\r\n\r\nhi"
        )
        response = await connection.read_response(timeout=2)
        assert response.status == 417
        assert await connection.is_closed_by_peer(timeout=5)
    stats = server.stats
    assert stats.requests_by_status["4xx"] == 1
    assert stats.parse_errors == 0  # a well-formed request, refused: not a parse error


async def test_expect_in_http_1_0_is_ignored(cyclehttp_server) -> None:
    server = await cyclehttp_server(make_app())
    async with await server.raw() as connection:
        await connection.send(post("/echo", b"hi", headers="Expect: 100-continue\r\n", version="1.0"))
        response = await connection.read_response(timeout=2)
        assert response.status == 200 and response.body == b"hi"  # no 100 first


async def test_100_continue_waits_its_turn_behind_a_slow_answer(cyclehttp_server) -> None:
    app = make_app()

    @app.get("/slow")
    async def slow(request: Request) -> str:
        await asyncio.sleep(0.2)
        return "slow"

    server = await cyclehttp_server(app)
    async with await server.raw() as connection:
        await connection.send(
            b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        first = await connection.read_response(timeout=2)
        interim = await connection.read_response(timeout=2)
        assert (first.body, interim.status) == (b"slow", 100)
        await connection.send(b"ok")
        assert (await connection.read_response()).body == b"ok"

"""Streamed responses (``Response.stream``) over real sockets.

What is checked: the chunked framing byte for byte; sync and async iterators,
str items as UTF-8, empty items skipped; HTTP/1.0 close-delimited; HEAD sends
the head only and closes the iterator unconsumed; a client that does not read
pauses the generator (bounded buffering); a client that leaves closes the
generator and leaves no task; an error mid-stream aborts that connection only;
pipelined requests wait behind a stream, in order; shutdown ends an endless
stream within its graceful timeout; the response is counted once and timed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.cycle.response_stream import StreamingResponse
from tests.serverside import small_window_connection, the_connection, wait_for

HIGH_WATER = 64 * 1024
PIECE = 64 * 1024
_PAUSED_WRITE = 1


def get(path: str, version: str = "1.1", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: t\r\n\r\n".encode()


def decode_chunked(body: bytes) -> tuple[list[bytes], bool]:
    """Split a chunked body into its chunks; True when it ends with the last chunk."""
    chunks = []
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return chunks, False
        size = int(body[pos:end], 16)
        if size == 0:
            assert body[end:] == b"\r\n\r\n", body[end:]
            return chunks, True
        chunk = body[end + 2 : end + 2 + size]
        if len(chunk) < size:
            return chunks, False
        assert body[end + 2 + size : end + 4 + size] == b"\r\n"
        chunks.append(chunk)
        pos = end + 4 + size


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head + b"\r\n", body


class Probe:
    """What a test generator did: how far it got, and whether its finally ran."""

    def __init__(self) -> None:
        self.yielded = 0
        self.started = False
        self.finished = asyncio.Event()


def events(
    probe: Probe, count: int | None = None, delay: float = 0.0, size: int = 5
) -> Callable[..., object]:
    async def handler(request: Request) -> StreamingResponse:
        async def generate() -> AsyncIterator[bytes]:
            probe.started = True
            try:
                i = 0
                while count is None or i < count:
                    if delay:
                        await asyncio.sleep(delay)
                    probe.yielded += 1
                    yield b"x" * size
                    i += 1
            finally:
                probe.finished.set()

        return Response.stream(generate(), content_type="text/plain")

    return handler


async def mixed() -> AsyncIterator[bytes | str | bytearray]:
    yield b"hello"
    yield ""
    yield "wörld"
    yield b""
    yield bytearray(b"!" * 20)


# -- framing -------------------------------------------------------------------------------


async def test_async_stream_is_chunked_byte_exact_and_keeps_the_connection(cyclehttp_server) -> None:
    server = await cyclehttp_server(
        App([("GET", "/s", lambda r: Response.stream(mixed())), ("GET", "/plain", "plain")])
    )
    async with await server.raw() as conn:
        await conn.send(get("/s"))
        response = await conn.read_response()
        _, body = split_message(response.raw)
        assert response.status == 200
        assert response.header("Transfer-Encoding") == "chunked"
        assert response.header("Content-Length") is None
        assert response.header("Content-Type") == "application/octet-stream"
        assert response.header("Date") is not None
        # Empty items send nothing (an empty chunk would end the body); str is UTF-8.
        assert body == b"5\r\nhello\r\n6\r\nw\xc3\xb6rld\r\n14\r\n" + b"!" * 20 + b"\r\n0\r\n\r\n"
        assert decode_chunked(body) == ([b"hello", "wörld".encode(), b"!" * 20], True)
        await conn.send(get("/plain"))
        assert (await conn.read_response()).body == b"plain"


@pytest.mark.parametrize("kind", ["generator", "list"])
async def test_sync_iterators_stream_too(cyclehttp_server, kind: str) -> None:
    def generate() -> Iterator[str | bytes]:
        yield "one,"
        yield b""
        yield b"two"

    def handler(request: Request) -> StreamingResponse:
        content = generate() if kind == "generator" else ["one,", b"", b"two"]
        return Response.stream(content, headers={"X-Kind": kind}, content_type="text/csv")

    server = await cyclehttp_server(App([("GET", "/s", handler)]))
    async with await server.raw() as conn:
        await conn.send(get("/s"))
        response = await conn.read_response()
        assert split_message(response.raw)[1] == b"4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n"
        assert response.header("Content-Type") == "text/csv"
        assert response.header("X-Kind") == kind
        assert not await conn.is_closed_by_peer(timeout=0.1)


async def test_http10_stream_is_close_delimited(cyclehttp_server) -> None:
    server = await cyclehttp_server(App([("GET", "/s", lambda r: Response.stream(mixed()))]))
    async with await server.raw() as conn:
        await conn.send(b"GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        raw = await conn.read_until_closed()
    head, body = split_message(raw)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in head
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert body == "hellowörld".encode() + b"!" * 20


async def test_head_sends_the_head_only_and_closes_the_iterator_unconsumed(cyclehttp_server) -> None:
    closed: list[str] = []

    class Chunks:
        def __init__(self, kind: str) -> None:
            self.kind = kind
            self.advanced = False

        def __aiter__(self) -> Chunks:
            return self

        async def __anext__(self) -> bytes:
            self.advanced = True
            raise StopAsyncIteration

        async def aclose(self) -> None:
            closed.append(self.kind)

        def __iter__(self) -> Chunks:
            return self

        def __next__(self) -> bytes:
            self.advanced = True
            raise StopIteration

        def close(self) -> None:
            closed.append(self.kind)

    made: list[Chunks] = []

    async def async_stream(request: Request) -> StreamingResponse:
        made.append(Chunks("async"))
        return Response.stream(made[-1])

    def sync_stream(request: Request) -> StreamingResponse:
        chunks = Chunks("sync")
        made.append(chunks)
        return Response.stream(_only_iter(chunks))

    server = await cyclehttp_server(App([("GET", "/a", async_stream), ("GET", "/s", sync_stream)]))
    async with await server.raw() as conn:
        await conn.send(get("/a", method="HEAD") + get("/s", method="HEAD") + get("/a"))
        first = await conn.read_response(head=True)
        second = await conn.read_response(head=True)
        assert first.header("Transfer-Encoding") == "chunked" and first.body == b""
        assert second.status == 200
        third = await conn.read_response()  # the GET after them: framing intact
        assert third.body == b""
    assert made[0].advanced is False and made[1].advanced is False
    await wait_for(lambda: len(closed) == 3, what="every iterator closed")
    assert sorted(closed) == ["async", "async", "sync"]


class _only_iter:  # hides __aiter__, so the sync path is taken
    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __iter__(self) -> object:
        return self.inner


# -- back-pressure ---------------------------------------------------------------------------


async def settle(proto: HttpProtocol, probe: Probe) -> int:
    """Wait (at most 5 s) until the generator has not moved for 0.1 s; the largest write buffer seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    most = 0
    last, since = probe.yielded, loop.time()
    while loop.time() - since < 0.1:
        assert loop.time() < deadline, "the generator never stopped with a client that does not read"
        assert proto._transport is not None
        most = max(most, proto._transport.get_write_buffer_size())
        if probe.yielded != last:
            last, since = probe.yielded, loop.time()
        await asyncio.sleep(0.005)
    return most


async def test_a_client_that_does_not_read_pauses_the_generator(cyclehttp_server) -> None:
    probe = Probe()
    server = await cyclehttp_server(App([("GET", "/s", events(probe, size=PIECE))]))
    conn, reader = await small_window_connection(server)
    try:
        proto = await the_connection(server)
        assert proto._transport is not None
        proto._transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        await conn.send(get("/s"))
        await wait_for(lambda: proto._paused & _PAUSED_WRITE, what="the server pausing on writes")
        # The kernel's and the client's buffers take a little more while they settle.
        most_buffered = await settle(proto, probe)
        paused_at = probe.yielded
        for _ in range(60):  # 0.3 s of an endless generator with a client that reads nothing
            assert proto._transport is not None
            most_buffered = max(most_buffered, proto._transport.get_write_buffer_size())
            await asyncio.sleep(0.005)
        assert probe.yielded == paused_at, "the generator ran on while the client did not read"
        assert proto._paused & _PAUSED_WRITE
        assert most_buffered <= HIGH_WATER + PIECE + 64, most_buffered
        # The client reads: the stream goes on.
        await reader.readexactly(2 * 1024 * 1024)
        await wait_for(lambda: probe.yielded > paused_at + 10, what="the stream resuming")
    finally:
        await conn.close()
    await asyncio.wait_for(probe.finished.wait(), 5)


# -- the client leaves, the iterator fails -------------------------------------------------


def stream_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and any(name in repr(t.get_coro()) for name in ("_send_long", "_call_async"))
    ]


@pytest.mark.parametrize("delay", [0.0, 0.05], ids=["paused-on-write", "awaiting-in-generator"])
async def test_client_disconnect_closes_the_generator_and_leaves_no_task(
    cyclehttp_server, caplog: pytest.LogCaptureFixture, delay: float
) -> None:
    probe = Probe()
    server = await cyclehttp_server(App([("GET", "/s", events(probe, delay=delay, size=PIECE))]))
    conn = await server.raw()
    proto = await the_connection(server)
    await conn.send(get("/s"))
    await wait_for(lambda: probe.yielded >= 2, what="the stream running")
    await conn.close()
    await asyncio.wait_for(probe.finished.wait(), 5)  # the generator's finally ran
    await wait_for(lambda: not server.server.state.connections, what="the connection gone")
    await wait_for(lambda: not stream_tasks(), what="no stream task left")
    assert proto._busy is None and proto._long is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert server.stats.handler_exceptions == 0


async def test_an_error_mid_stream_aborts_that_connection_and_is_logged(
    cyclehttp_server, caplog: pytest.LogCaptureFixture
) -> None:
    finished = asyncio.Event()

    async def failing(request: Request) -> StreamingResponse:
        async def generate() -> AsyncIterator[bytes]:
            try:
                yield b"first"
                await asyncio.sleep(0.01)
                raise RuntimeError("the feed broke")
            finally:
                finished.set()

        return Response.stream(generate())

    def wrong_type(request: Request) -> StreamingResponse:
        return Response.stream([b"ok", 42])  # type: ignore[list-item]

    server = await cyclehttp_server(
        App([("GET", "/fail", failing), ("GET", "/type", wrong_type), ("GET", "/", "still here")])
    )
    for path, message in (("/fail", "the feed broke"), ("/type", "yielded int")):
        caplog.clear()
        async with await server.raw() as conn:
            await conn.send(get(path) + get("/"))  # the pipelined one is lost with the connection
            raw = await conn.read_until_closed()
        head, body = split_message(raw)
        assert b"200 OK" in head
        chunks, complete = decode_chunked(body)
        assert not complete, "an aborted stream must not look complete"
        assert chunks[:1] == [b"first" if path == "/fail" else b"ok"]
        errors = [r for r in caplog.records if r.name == "cyclehttp.error" and r.levelno == logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert message in str(errors[0].exc_info[1])
    await asyncio.wait_for(finished.wait(), 5)
    assert server.stats.handler_exceptions == 2
    async with await server.raw() as conn:  # the server goes on
        await conn.send(get("/"))
        assert (await conn.read_response()).body == b"still here"


async def test_a_stream_after_a_failed_one_is_sent_whole(cyclehttp_server) -> None:
    """A failed stream leaves nothing behind: the next one on the server ends cleanly."""

    async def failing(request: Request) -> StreamingResponse:
        async def generate() -> AsyncIterator[bytes]:
            yield b"first"
            raise RuntimeError("the feed broke")

        return Response.stream(generate())

    async def fine(request: Request) -> StreamingResponse:
        async def generate() -> AsyncIterator[bytes]:
            for piece in (b"a", b"b", b"c"):
                yield piece
                await asyncio.sleep(0)

        return Response.stream(generate())

    server = await cyclehttp_server(App([("GET", "/fail", failing), ("GET", "/fine", fine)]))
    async with await server.raw() as conn:
        await conn.send(get("/fail"))
        await conn.read_until_closed()
    for _ in range(3):
        async with await server.raw() as conn:
            await conn.send(get("/fine"))
            response = await conn.read_response()
            assert response.body == b"abc"
    assert server.stats.handler_exceptions == 1


# -- order, shutdown, metrics ------------------------------------------------------------------


async def test_pipelined_requests_wait_behind_a_slow_stream_in_order(cyclehttp_server) -> None:
    probe = Probe()

    def number(request: Request) -> str:
        return str(request.params["i"])

    server = await cyclehttp_server(
        App(
            [
                ("GET", "/s", events(probe, count=5, delay=0.03)),
                ("GET", "/n/{i:int}", number),
                ("GET", "/", "r"),
            ]
        )
    )
    async with await server.raw() as conn:
        await conn.send(get("/n/1") + get("/s") + get("/n/2") + get("/") + get("/s") + get("/n/3"))
        responses = await conn.read_responses(6)
    assert [r.body for r in responses] == [b"1", b"x" * 25, b"2", b"r", b"x" * 25, b"3"]
    assert responses[1].header("Transfer-Encoding") == "chunked"


async def test_shutdown_ends_an_endless_stream_within_the_graceful_timeout(cyclehttp_server) -> None:
    probe = Probe()
    server = await cyclehttp_server(App([("GET", "/s", events(probe, delay=0.01))]), graceful_timeout=0.3)
    conn = await server.raw()
    await conn.send(get("/s"))
    await wait_for(lambda: probe.yielded >= 3, what="the stream running")
    began = time.monotonic()
    await asyncio.wait_for(server.server.shutdown(), 3)
    took = time.monotonic() - began
    assert 0.3 <= took < 1.3, took
    raw = await conn.read_until_closed()
    head, body = split_message(raw)
    assert b"Transfer-Encoding: chunked" in head
    chunks, complete = decode_chunked(body)
    assert complete, "the stream should end with its last chunk at the deadline"
    assert chunks and all(c == b"xxxxx" for c in chunks)
    await asyncio.wait_for(probe.finished.wait(), 2)
    assert not stream_tasks()


async def test_shutdown_with_a_stream_the_client_does_not_read_is_bounded(cyclehttp_server) -> None:
    probe = Probe()
    server = await cyclehttp_server(App([("GET", "/s", events(probe, size=PIECE))]), graceful_timeout=0.2)
    conn = await server.raw()
    proto = await the_connection(server)
    await conn.send(get("/s"))
    await wait_for(lambda: proto._paused & _PAUSED_WRITE, what="the server pausing on writes")
    began = time.monotonic()
    await asyncio.wait_for(server.server.shutdown(), 3)
    assert time.monotonic() - began < 1.2
    await asyncio.wait_for(probe.finished.wait(), 2)
    assert not server.server.state.connections
    await conn.close()


async def test_a_stream_is_counted_once_and_timed(cyclehttp_server) -> None:
    probe = Probe()
    server = await cyclehttp_server(
        App(
            [
                ("GET", "/s", events(probe, count=3, delay=0.05)),
                ("GET", "/sync", lambda r: Response.stream(["a"])),
            ]
        )
    )
    async with await server.raw() as conn:
        await conn.send(get("/s"))
        await conn.read_response()
        await conn.send(get("/sync"))
        assert (await conn.read_response()).body == b"a"
    stats = server.stats
    assert stats.requests == 2
    assert stats.requests_by_status["2xx"] == 2
    assert stats.handler_time.count == 2
    assert stats.request_latency.count == 2
    # Latency ends when the head is handed on, not when the 150 ms body ends.
    assert stats.request_latency.max_ns < 100_000_000


async def test_a_stream_while_draining_says_connection_close(cyclehttp_server) -> None:
    probe = Probe()
    server = await cyclehttp_server(
        App([("GET", "/s", events(probe, count=2, delay=0.05))]), graceful_timeout=2
    )
    async with await server.raw() as conn:
        await conn.send(get("/s"))
        await wait_for(lambda: probe.started, what="the stream started")
        shutting = asyncio.create_task(server.server.shutdown())
        response = await conn.read_response()
        assert response.body == b"x" * 10
        assert await conn.is_closed_by_peer()
        await asyncio.wait_for(shutting, 3)


# -- the API -------------------------------------------------------------------------------------


def test_stream_rejects_what_is_not_an_iterator_and_bad_input() -> None:
    with pytest.raises(TypeError, match="whole body"):
        Response.stream(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable"):
        Response.stream(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot have a body"):
        Response.stream([b"x"], status=204)
    with pytest.raises(ValueError, match="set by the server"):
        Response.stream([b"x"], headers={"Content-Length": "3"})
    with pytest.raises(ValueError, match="CR, LF"):
        Response.stream([b"x"], headers={"X-A": "a\r\nb"})
    stream = Response.stream([b"x"], headers=[("Content-Type", "text/event-stream")])
    assert isinstance(stream, StreamingResponse)
    assert stream.content_type == "text/event-stream"
    assert [n for n, _ in stream.headers].count("Content-Type") == 1


async def test_a_bad_request_behind_a_long_stream_waits_for_the_stream_to_end(cyclehttp_server) -> None:
    """The error answer's linger close starts when it is sent, not while the stream before it runs."""

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(5):
            await asyncio.sleep(0.6)  # 3 s in all: longer than the 2 s linger, and than a tick
            yield b"tick\n"

    server = await cyclehttp_server(App([("GET", "/slow", lambda r: Response.stream(slow()))]))
    async with await server.raw() as conn:
        await conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n")
        data = await conn.read_until_closed(timeout=10)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert rest.count(b"tick\n") == 5
    assert b"0\r\n\r\nHTTP/1.1 400 " in rest

"""Flow control and failure containment over real sockets.

What is checked: a client that does not read cannot make the server buffer
without bound (pause_writing stops reading, resume_writing goes on); the
pipelining queue is bounded by ``max_pipelined_requests`` and reading resumes
when it drains to half; a failing handler is answered 500 and logged once; a
bug inside the protocol loses one connection, not the server; a client that
vanishes mid-request leaves no connection and no task behind.

The tests look at the server-side ``HttpProtocol`` (``_paused``, ``_queue``,
``_busy``, ``_transport``) because flow control is invisible on the wire until
it fails; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection
from tests.serverside import the_connection, wait_for

BIG = 256 * 1024
# asyncio's and uvloop's default high-water mark of a transport's write buffer.
HIGH_WATER = 64 * 1024
_PAUSED_WRITE = 1
_PAUSED_QUEUE = 2


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def number(request: Request) -> str:
    return str(request.params["i"])


async def settle(proto: HttpProtocol, seconds: float = 0.3) -> tuple[int, int]:
    """Watch ``proto`` for ``seconds``: the largest write buffer and queue seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    most_buffered = most_queued = 0
    while loop.time() < deadline:
        transport = proto._transport
        assert transport is not None, "the server closed a connection it should keep"
        most_buffered = max(most_buffered, transport.get_write_buffer_size())
        most_queued = max(most_queued, len(proto._queue))
        await asyncio.sleep(0.005)
    return most_buffered, most_queued


# -- a client that does not read ----------------------------------------------------------


def big_app() -> App:
    return App([("GET", "/big", Response(b"x" * BIG)), ("GET", "/n/{i:int}", number)])


def big_pipeline(count: int) -> list[bytes]:
    # Every 10th request is a small numbered one, so the order of the answers shows.
    return [get(f"/n/{i}") if i % 10 == 0 else get("/big") for i in range(count)]


async def check_big_answers(conn: RawConnection, count: int) -> None:
    responses = await conn.read_responses(count, timeout=60)
    for i, response in enumerate(responses):
        assert response.status == 200, (i, response.raw[:200])
        if i % 10 == 0:
            assert response.body == str(i).encode(), f"answer {i} out of order: {response.body[:50]!r}"
        else:
            assert len(response.body) == BIG, (i, len(response.body))
    assert not await conn.is_closed_by_peer(timeout=0.2)  # still keep-alive after it all


SMALL_BUFFER = 64 * 1024


async def small_buffered_connection(server: TestServer) -> RawConnection:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)  # before connect: sets the window
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (server.host, server.port)), 5)
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    return RawConnection(reader, writer, timeout=30)


async def never_read_then_read(server: TestServer, requests: list[bytes], first: int) -> int:
    """Send ``first`` of ``requests`` in one write and the rest once the server pauses,
    never reading; then read every answer. Returns the largest write buffer seen on
    the server while the client was not reading.
    """
    max_queue = server.server.config.max_pipelined_requests
    conn = await small_buffered_connection(server)
    try:
        proto = await the_connection(server)
        # Small kernel buffers on both ends, as over a slow link: otherwise loopback's
        # autotuned buffers swallow megabytes and the server never sees back-pressure.
        server_sock = proto._transport.get_extra_info("socket") if proto._transport else None
        assert server_sock is not None
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        await conn.send(b"".join(requests[:first]))
        await wait_for(lambda: proto._paused & _PAUSED_WRITE, what="the server pausing on writes")

        # The server no longer reads, so these only fill kernel buffers (and would block,
        # with more data): send from a task, bounded, and cancelled at the end.
        sender = asyncio.create_task(conn.send(b"".join(requests[first:])))
        try:
            await asyncio.wait_for(asyncio.shield(sender), 10)
            most_buffered, most_queued = await settle(proto)
            assert proto._paused & _PAUSED_WRITE, "reading resumed while the client does not read"
            # Nothing sent after the pause was read: only the first write was parsed.
            assert server.stats.requests + len(proto._queue) <= first
            assert most_queued <= max_queue + first
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await check_big_answers(conn, len(requests))
        # With everything read, nothing is held back any more.
        await wait_for(lambda: proto._paused == 0 and not proto._queue, what="reading resumed")
        assert proto._transport is not None
        assert proto._transport.get_write_buffer_size() == 0
        assert server.stats.requests == len(requests)
        return most_buffered
    finally:
        await conn.close()


async def test_a_client_that_does_not_read_pauses_reading_and_is_served_when_it_reads(
    cyclehttp_server,
) -> None:
    # The server answers the first ten, its write buffer goes over the high-water mark
    # (pause_writing), it stops reading, and the other 390 requests wait in kernel
    # buffers until the client reads (resume_writing).
    server = await cyclehttp_server(big_app(), max_pipelined_requests=4)
    most_buffered = await never_read_then_read(server, big_pipeline(400), first=10)
    # At most: under the high-water mark before the write that paused, plus that write
    # (the answers of one read: ten here).
    assert most_buffered <= HIGH_WATER + 10 * (BIG + 1024), most_buffered


async def test_many_requests_in_one_read_do_not_buffer_all_their_answers(cyclehttp_server) -> None:
    # The attack form: 400 tiny pipelined requests arrive in one read. The answers the
    # server renders before it notices the client does not read must stay bounded by
    # the high-water mark plus a queue's worth, not by how many requests one read holds.
    max_queue = 4
    server = await cyclehttp_server(big_app(), max_pipelined_requests=max_queue)
    requests = big_pipeline(400)
    most_buffered = await never_read_then_read(server, requests, first=len(requests))
    assert most_buffered <= HIGH_WATER + (max_queue + 1) * (BIG + 1024), most_buffered


# -- the pipelining queue -----------------------------------------------------------------


async def test_pipeline_behind_a_slow_handler_pauses_reading_and_is_answered_in_order(
    cyclehttp_server,
) -> None:
    async def slow(request: Request) -> str:
        await asyncio.sleep(0.2)
        return "slow"

    server = await cyclehttp_server(
        App([("GET", "/slow", slow), ("GET", "/n/{i:int}", number)]), max_pipelined_requests=4
    )
    async with await server.raw() as conn:
        proto = await the_connection(server)
        await conn.send(get("/slow") + b"".join(get(f"/n/{i}") for i in range(1, 50)))
        await wait_for(lambda: proto._paused & _PAUSED_QUEUE, timeout=2, what="queue pause")
        assert proto._busy is not None, "the slow handler should still be running"
        assert len(proto._queue) >= 4
        assert server.stats.requests == 0  # none answered ahead of /slow
        responses = await conn.read_responses(50, timeout=10)
        assert [r.body for r in responses] == [b"slow"] + [str(i).encode() for i in range(1, 50)]
        assert proto._paused == 0
        assert not proto._queue


def gated_app(gates: dict[int, asyncio.Event]) -> App:
    async def gated(request: Request) -> str:
        i = request.params["i"]
        await asyncio.wait_for(gates.setdefault(i, asyncio.Event()).wait(), 10)
        return f"gated {i}"

    return App([("GET", "/gate/{i:int}", gated), ("GET", "/n/{i:int}", number)])


async def test_the_queue_holds_max_pipelined_requests_and_reading_resumes_at_half(cyclehttp_server) -> None:
    gates: dict[int, asyncio.Event] = {}
    server = await cyclehttp_server(gated_app(gates), max_pipelined_requests=4)
    async with await server.raw() as conn:
        proto = await the_connection(server)
        await conn.send(get("/gate/0"))
        await wait_for(lambda: proto._busy is not None, what="/gate/0 running")
        for i in range(1, 5):  # one request a read: the queue grows one at a time
            await conn.send(get(f"/gate/{i}"))
            await wait_for(lambda i=i: len(proto._queue) == i, what=f"{i} queued")
        assert proto._paused & _PAUSED_QUEUE, "a full queue must pause reading"

        # Sent now, these wait in the kernel: the server must not read them.
        later = [get(f"/n/{i}") for i in range(5, 40)]
        await conn.send(b"".join(later))
        await asyncio.sleep(0.1)
        assert len(proto._queue) == 4

        gates.setdefault(0, asyncio.Event()).set()  # /gate/1 starts: 3 left queued, over half
        await wait_for(lambda: len(proto._queue) == 3, what="/gate/1 started")
        await asyncio.sleep(0.1)
        assert len(proto._queue) == 3, "reading resumed before the queue drained to half"
        assert proto._paused & _PAUSED_QUEUE

        gates.setdefault(1, asyncio.Event()).set()  # /gate/2 starts: 2 left, half: read again
        await wait_for(lambda: len(proto._queue) > 2, what="reading resumed at half")
        for i in range(2, 5):
            gates.setdefault(i, asyncio.Event()).set()
        responses = await conn.read_responses(40, timeout=10)
        assert [r.body for r in responses] == [f"gated {i}".encode() for i in range(5)] + [
            str(i).encode() for i in range(5, 40)
        ]
        assert proto._paused == 0


@pytest.mark.parametrize("limit", [1, 2, 3, 32])
async def test_every_queue_limit_answers_a_long_mixed_pipeline(cyclehttp_server, limit: int) -> None:
    # Slow requests scattered through a pipeline: the queue fills, reading pauses and
    # resumes at half many times over; everything is answered, in order.
    async def slow(request: Request) -> str:
        await asyncio.sleep(0.005)
        return f"slow {request.params['i']}"

    server = await cyclehttp_server(
        App([("GET", "/slow/{i:int}", slow), ("GET", "/n/{i:int}", number)]), max_pipelined_requests=limit
    )
    paths = [f"/slow/{i}" if i % 7 == 0 else f"/n/{i}" for i in range(150)]
    async with await server.raw() as conn:
        proto = await the_connection(server)
        for start in range(0, len(paths), 15):  # several reads, some while paused
            await conn.send(b"".join(get(p) for p in paths[start : start + 15]))
        responses = await conn.read_responses(len(paths), timeout=20)
        assert [r.body for r in responses] == [
            (f"slow {i}" if i % 7 == 0 else str(i)).encode() for i in range(150)
        ]
        assert proto._paused == 0 and not proto._queue


# -- failures -----------------------------------------------------------------------------


def error_records(caplog: pytest.LogCaptureFixture, exc_type: type[BaseException]) -> list[logging.LogRecord]:
    """Every record, on any logger, that carries an ``exc_type`` traceback."""
    return [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], exc_type)]


class HandlerBoom(RuntimeError):
    pass


class HandlerOwnBaseException(BaseException):
    """Not an Exception, nor SystemExit or KeyboardInterrupt (as a test framework's failures are)."""


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_raising_a_base_exception_aborts_its_connection_only(
    cyclehttp_server, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    def leave(request: Request) -> str:
        raise HandlerOwnBaseException("not an Exception")

    async def leave_async(request: Request) -> str:
        await asyncio.sleep(0)
        raise HandlerOwnBaseException("not an Exception")

    server = await cyclehttp_server(
        App([("GET", "/leave", leave if kind == "sync" else leave_async), ("GET", "/n/{i:int}", number)])
    )
    caplog.set_level(logging.DEBUG)
    async with await server.raw() as conn:
        await conn.send(get("/leave") + get("/n/1"))
        assert await conn.is_closed_by_peer(timeout=5.0)  # aborted, never left waiting
    async with await server.raw() as other:
        await other.send(get("/n/2"))
        assert (await other.read_response()).body == b"2"
    await asyncio.sleep(0.05)  # a stray "exception was never retrieved" would come now
    records = error_records(caplog, HandlerOwnBaseException)
    assert [(r.name, r.levelno) for r in records] == [("cyclehttp.error", logging.ERROR)]
    assert server.stats.handler_exceptions == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_failing_handler_is_logged_once_answered_500_and_the_connection_goes_on(
    cyclehttp_server, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    def fail(request: Request) -> str:
        raise HandlerBoom("boom from the handler")

    async def fail_async(request: Request) -> str:
        await asyncio.sleep(0)
        raise HandlerBoom("boom from the handler")

    server = await cyclehttp_server(
        App([("GET", "/fail", fail if kind == "sync" else fail_async), ("GET", "/n/{i:int}", number)])
    )
    caplog.set_level(logging.DEBUG)
    async with await server.raw() as conn:
        await conn.send(get("/fail") + get("/n/1"))
        failed, after = await conn.read_responses(2)
        assert failed.status == 500
        assert b"boom" not in failed.raw  # no internals leak to the client
        assert failed.header("connection") != "close"
        assert after.body == b"1"
        await conn.send(get("/n/2"))
        assert (await conn.read_response()).body == b"2"
    await asyncio.sleep(0.05)  # a stray "exception was never retrieved" would come now
    records = error_records(caplog, HandlerBoom)
    assert len(records) == 1, [(r.name, r.getMessage()) for r in records]
    (record,) = records
    assert record.name == "cyclehttp.error"
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[2] is not None  # with its traceback
    assert "fail" in record.getMessage()  # names the handler (its __qualname__)


class ProtocolBug(RuntimeError):
    pass


@pytest.mark.parametrize("callback", ["on_url", "on_message_complete"])
async def test_a_bug_in_the_protocol_is_logged_and_loses_only_its_connection(
    cyclehttp_server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, callback: str
) -> None:
    server = await cyclehttp_server(App([("GET", "/n/{i:int}", number)]))
    caplog.set_level(logging.DEBUG)
    async with await server.raw() as before:
        await before.send(get("/n/0"))
        assert (await before.read_response()).body == b"0"

        def broken(self: HttpProtocol, *args: object) -> None:
            raise ProtocolBug(f"bug in {callback}")

        monkeypatch.setattr(HttpProtocol, callback, broken)
        async with await server.raw() as victim:
            await victim.send(get("/n/1"))
            answer = await victim.read_until_closed(timeout=5)  # the bug closes this connection
            # It is the server's fault: not a 4xx that blames the client.
            assert not answer.startswith(b"HTTP/1.1 4"), answer[:100]
        records = error_records(caplog, ProtocolBug)
        assert len(records) == 1, [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
        assert records[0].name == "cyclehttp.error"
        assert records[0].levelno >= logging.ERROR

        await before.send(get("/n/2"))  # a connection opened earlier goes on
        assert (await before.read_response()).body == b"2"
    monkeypatch.undo()
    async with await server.raw() as fresh:
        await fresh.send(get("/n/3"))
        assert (await fresh.read_response()).body == b"3"


# -- clients that vanish ------------------------------------------------------------------


def abort(conn: RawConnection) -> None:
    """Close with RST (SO_LINGER 0), as a crashed client or a dropped route does."""
    sock = conn._writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn._writer.transport.abort()


@pytest.mark.parametrize(
    ("what", "wire", "reset"),
    [
        ("half a head", b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Half: ab", False),
        ("half a head", b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Half: ab", True),
        ("half a body", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf", False),
        ("half a body", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf", True),
        ("a running handler", get("/slow"), False),
        ("a stuck handler", get("/stuck"), True),
        ("a queue behind a handler", get("/stuck") + get("/echo") * 3 + get("/stuck"), True),
    ],
)
async def test_a_client_that_vanishes_mid_request_leaves_nothing_behind(
    cyclehttp_server, what: str, wire: bytes, reset: bool
) -> None:
    stuck_started = asyncio.Event()

    async def slow(request: Request) -> str:
        await asyncio.sleep(0.3)
        return "slow"

    async def stuck(request: Request) -> str:
        stuck_started.set()
        await asyncio.sleep(30)  # only cancellation ends it in time
        return "stuck"

    def echo(request: Request) -> bytes:
        return request.body

    server = await cyclehttp_server(
        App([("GET", "/slow", slow), ("GET", "/stuck", stuck), (["GET", "POST"], "/echo", echo)])
    )
    connections = server.server.state.connections
    baseline = asyncio.all_tasks()
    conn = await server.raw()
    await conn.send(wire)
    proto = await the_connection(server)
    if "handler" in what:
        await wait_for(lambda: proto._busy is not None, what="the handler running")
        task = proto._busy
        assert task is not None
    else:
        await wait_for(lambda: proto._state != 0, what="the request being read")  # not IDLE
        task = None
    if reset:
        abort(conn)
    await conn.close()
    await wait_for(lambda: not connections, timeout=5, what="the connection gone")
    await wait_for(lambda: asyncio.all_tasks() <= baseline, timeout=5, what="tasks back to baseline")
    if task is not None:
        assert task.done()
        if reset and "stuck" in wire.decode():
            assert task.cancelled(), "a handler of a reset connection must be cancelled"
    assert proto._transport is None and not proto._queue and proto._busy is None
    assert server.stats.connections_open == 0

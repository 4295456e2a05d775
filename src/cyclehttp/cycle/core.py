"""``ConnectionCore``: what every part of a connection shares.

The fields of one connection (``HttpProtocol`` is made of ``ConnectionCore``,
``FailureHandling``, ``UploadHandling``, ``LongBodySending`` and its own hot
path, each in the module of its concern), and the primitives they all use:
accounting an answer (``_sent``), writing the answers of one read at once
(``_flush``), the queue (``_drain_queue``, ``_execute_or_queue``) and pausing
the reading (``_pause``, ``_resume``). See ``cycle.connection`` for the cycle.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import monotonic_ns
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from httptools import HttpRequestParser

from cyclehttp.clock.histogram import FAST_INDEX, FAST_SHIFT
from cyclehttp.clock.stats import PARSE_ERROR
from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.context import ConnectionContext
from cyclehttp.cycle.request import Request
from cyclehttp.cycle.request_stream import BodyStream
from cyclehttp.cycle.response_stream import LongResponse
from cyclehttp.cycle.server_state import ServerState
from cyclehttp.cycle.states import CLOSING, IDLE, PAUSED_QUEUE, PAUSED_WRITE
from cyclehttp.cycle.wire import CLOSE, KEEP_ALIVE

if TYPE_CHECKING:
    from cyclehttp.cycle.targets import HandlerTarget

__all__ = ["CONTINUE", "FLUSH_BYTES", "JOIN_BYTES", "ConnectionCore", "QueueEntry", "Refused"]

# The interim answer to ``Expect: 100-continue`` (RFC 9110 section 10.1.1); as a queue
# entry's target it is written in its turn and counts as no response.
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

# Answers produced in one go are written as soon as they reach this size, so a
# transport over its high-water mark calls pause_writing before the next request
# runs: one read full of pipelined requests cannot render all their answers at once.
FLUSH_BYTES: Final = 64 * 1024

# Answers produced in one go are joined into one write up to this size; larger ones are
# handed to the transport as they are (uvloop writes them with writev), so a large static
# body shared by every request is never copied, nor held in a copy while a client reads slowly.
JOIN_BYTES: Final = 16 * 1024

QueueEntry: TypeAlias = tuple[Any, Request | None, int, bool, int]
"""A request waiting for its turn: (target, request, mode, head, start clock)."""


class Refused(Exception):
    """Raised inside a parser callback to stop parsing.

    With a status, the request is refused with it; without one, parsing stops
    on purpose (after a final request) and nothing more is answered. httptools
    keeps the raised exception as the ``__context__`` of its own error.
    """

    def __init__(self, status: int | None = None, detail: str = "", reason: str = PARSE_ERROR) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.reason = reason


@mypyc_attr(allow_interpreted_subclasses=True)
class ConnectionCore(asyncio.Protocol):
    """The fields and shared primitives of one connection; ``HttpProtocol`` is the whole of it."""

    __slots__ = (
        "_access",
        "_batch",
        "_begin_ns",
        "_body",
        "_body_bytes",
        "_busy",
        "_close_after_flush",
        "_conditions",
        "_connection_header",
        "_context",
        "_continue_pending",
        "_draining",
        "_ending",
        "_exact",
        "_expect",
        "_fresh",
        "_handler_counts",
        "_handler_time",
        "_head",
        "_head_bytes",
        "_headers",
        "_hosts",
        "_index",
        "_latency",
        "_latency_counts",
        "_linger",
        "_long",
        "_loop",
        "_max_body",
        "_max_header",
        "_max_queue",
        "_max_url",
        "_method",
        "_mode",
        "_out",
        "_out_size",
        "_params",
        "_parser",
        "_partial",
        "_path",
        "_paused",
        "_peer",
        "_query",
        "_queue",
        "_read_ns",
        "_server",
        "_since",
        "_started_ns",
        "_state",
        "_stats",
        "_targets",
        "_timed",
        "_trailers",
        "_transport",
        "_url",
        "_version",
        "_write_paused_ns",
        "_write_waiter",
    )

    def __init__(self, server: ServerState) -> None:
        self._server = server
        self._loop = server.loop
        self._exact = server.router.exact
        self._targets = server.router.targets
        self._stats = server.stats
        config = server.config
        self._max_queue = config.max_pipelined_requests
        self._max_header = config.max_header_size
        self._max_url = config.max_url_length
        self._max_body = config.max_body_size
        self._timed = config.timing
        self._latency = server.stats.request_latency
        self._latency_counts = self._latency.counts
        self._handler_time = server.stats.handler_time
        self._handler_counts = self._handler_time.counts
        self._access = server.access_log
        self._peer = "-"
        self._read_ns = 0
        self._begin_ns = 0
        self._batch = 0
        self._state = IDLE
        self._transport: asyncio.Transport | None = None
        self._context: ConnectionContext | None = None  # what its Requests share: _new_context
        self._parser = HttpRequestParser(self)
        self._parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._out: list[bytes] = []
        self._out_size = 0
        self._queue: deque[tuple[Any, Request | None, int, bool, int]] = deque()
        self._busy: asyncio.Task[None] | None = None
        self._paused = 0
        self._close_after_flush = False
        self._draining = False
        self._started_ns = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        # Trailer fields of the request being read (reset where they are taken: on_message_complete).
        self._trailers: list[tuple[bytes, bytes]] | None = None
        # The body being read: chunks of a buffered handler route, the stream of a
        # stream_body route (it has an append too: on_body does not tell them apart).
        self._body: list[bytes] | BodyStream | None = None
        self._expect: bytes | None = None  # Expect's value; reset where it is read, like _conditions
        self._continue_pending = False  # a 100 Continue is owed once the body is wanted
        self._method = b""
        self._path = b""
        self._query = b""
        self._version = "1.1"
        self._index = 0
        self._params: dict[str, Any] | None = None
        self._mode = KEEP_ALIVE
        self._head = False
        self._hosts = 0
        self._connection_header = False
        self._conditions: list[bytes | None] | None = None  # see _add_condition
        self._head_bytes = 0
        self._partial = 0
        self._body_bytes = 0
        self._since = 0  # set by connection_made, then by requests and answers
        self._fresh = True
        self._linger = False
        self._long: LongResponse | None = None  # the response whose body is being sent, if any
        self._ending = False  # shutdown asked the long response to end
        self._write_waiter: asyncio.Future[None] | None = None
        self._write_paused_ns = 0  # when pause_writing was last called (send_timeout)

    def _sent(self, mode: int, size: int, start: int) -> None:
        """Account one answer put in ``_out``; ``start`` 0: its latency is recorded already."""
        self._out_size += size
        if self._timed and start:
            if start == self._read_ns:
                self._batch += 1  # timed when _flush hands it to the transport
            else:  # its first byte came in an earlier read: timed now (the flush is microseconds off)
                self._latency.record(monotonic_ns() - start)
        if mode == CLOSE or self._draining:
            self._close_after_flush = True
            self._queue.clear()
        elif self._out_size >= FLUSH_BYTES:
            self._flush()  # may call pause_writing: the requests after this one queue

    def _drain_queue(self) -> None:
        queue = self._queue
        while queue and self._busy is None and not self._paused & PAUSED_WRITE:
            self._execute(*queue.popleft())
        if self._state == CLOSING:
            if not queue and self._busy is None:
                self._close_after_flush = True
        elif self._paused & PAUSED_QUEUE and len(queue) <= self._max_queue // 2:
            self._resume(PAUSED_QUEUE)

    def _flush(self) -> None:
        out = self._out
        transport = self._transport
        if transport is None:
            return
        if out:
            if len(out) == 1:
                transport.write(out[0])
            elif self._out_size < JOIN_BYTES:
                transport.write(b"".join(out))
            else:  # a large body among them (a split static body, a file): handed on, not copied
                transport.writelines(out)
            out.clear()
            self._stats.bytes_sent += self._out_size
            self._out_size = 0
            batch = self._batch
            if batch:
                self._batch = 0
                elapsed = monotonic_ns() - self._read_ns
                # LogHistogram.record_many, inlined: this runs for every response written.
                try:
                    self._latency_counts[FAST_INDEX[elapsed >> FAST_SHIFT]] += batch
                except IndexError:  # beyond the table (histogram.FAST_INDEX): the exact way
                    self._latency.record_many(elapsed, batch)
        if self._close_after_flush:
            self._close_after_flush = False
            if self._linger and transport.can_write_eof():
                transport.write_eof()
                self._since = monotonic_ns()
                self._paused = 0
                transport.resume_reading()
            else:
                transport.close()

    def _pause(self, reason: int) -> None:
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection now (RST): shutdown's deadline, a body that failed midway."""
        self._state = CLOSING
        if self._transport is not None:
            self._transport.abort()

    def _log_access(self, request: Request | None, status: int, size: int, start: int) -> None:
        assert self._access is not None
        self._access.log(self._peer, request, status, size, start)

    def _new_context(self) -> ConnectionContext:
        """The context of this connection's Requests, made with the first of them (once)."""
        server = self._server
        self._context = context = ConnectionContext(self._transport, server.config, server.app)
        return context

    def _execute_or_queue(self, entry: QueueEntry, *, even_unread: bool = False) -> None:
        """Answer now when nothing is ahead and the client reads; else wait in the queue (bounded).

        ``even_unread``: an answer that ends the connection goes out now even while the
        client is not reading (into the transport's buffer, before the close).
        """
        if self._busy is None and not self._queue and (even_unread or not self._paused & PAUSED_WRITE):
            self._execute(*entry)
        else:
            self._queue.append(entry)
            if len(self._queue) >= self._max_queue:
                self._pause(PAUSED_QUEUE)

    def _execute(self, target: Any, request: Request | None, mode: int, head: bool, start: int) -> None:
        """Answer one request (``HttpProtocol``, the hot path)."""
        raise NotImplementedError

    def _answered(
        self, target: HandlerTarget, request: Request, data: bytes, mode: int, start: int, timed: bool
    ) -> None:
        """Count, queue for writing and log a handler's answer (``HttpProtocol``)."""
        raise NotImplementedError

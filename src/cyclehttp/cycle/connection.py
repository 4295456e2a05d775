"""HttpProtocol: one connection's cycle, and the whole hot path.

Theory of operation
-------------------
httptools calls back as it parses. ``on_headers_complete`` routes the request
(the router gives a target index) and decides the connection mode;
``on_message_complete`` *executes* the request, or queues it when an earlier
request on the same connection is still being handled (an async handler) or
the client is not reading (write paused). Responses are therefore produced in
request order, whatever the handlers do.

Responses produced while one ``data_received`` runs are collected in ``_out``
and written with a single ``transport.write`` at its end (coalescing).

The read side has one explicit state:

=========  =============================================================
IDLE       between requests (nothing of the next request has arrived)
HEAD       reading a request line and headers
BODY       reading a request body (a streamed one: its handler runs meanwhile)
CLOSING    no more requests will be parsed; close once responses are out
=========  =============================================================

The handler side is ``_busy`` (the task of the async handler running, or
None) and ``_queue`` (requests parsed but not yet executed). Reading is paused
while the queue is full or the transport's write buffer is over its high-water
mark, so neither can grow without bound.

A handler may return a *long response* (``streaming.StreamingResponse``,
``files.FileResponse``): its head is answered like any other, then its body is
sent by the busy task (``_send_long``), which waits at ``writable()`` while the
transport is paused; the requests behind it queue as behind an async handler.

A ``stream_body`` route's handler runs at ``on_headers_complete`` instead (or
queues there, in order): ``_body`` is then a ``bodystream.BodyStream`` that
``on_body`` appends to like the buffered list, so the callbacks do not branch.
The stream holds ``STREAM_BUFFER`` bytes before reading pauses (``_PAUSED_BODY``);
the handler taking chunks resumes it. A limit, timeout or parse error while it
is read fails the stream with ``HTTPError`` and the server answers that status
(``_fail``), dropping the handler's answer; the client leaving fails it with
``ClientDisconnected`` and the handler ends by itself. A handler that returns
before the body is all in answers with ``Connection: close`` and a lingering
close. The request is the busy task until its handler returns, so requests
pipelined after it queue as behind any async handler.

``Expect: 100-continue`` is noted in ``on_header`` (length 6) and decided once
the request is routed (``_expectation``): 417 for other expectations; a static
target (404, 405 included) answers at once and closes, the body unread; a
handler route owes a ``100 Continue``, written in order when the body is
wanted (a buffered route: now; a streamed one: its first read). HTTP/1.0
ignores Expect.

Every read takes ``monotonic_ns()`` once (``_read_ns``): a request that
begins in it starts its timeouts and its latency there. Answers to requests
that began in the current read are counted in ``_batch`` and timed together
by the one clock read after their write in ``_flush``; any other answer is
timed when it is produced. A sync handler's time and its request's latency
end on one clock read after the handler's result is rendered.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import traceback
from collections import deque
from time import monotonic_ns
from typing import TYPE_CHECKING, Any, Final

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
    HttpRequestParser,
    parse_url,
)

from cyclehttp.clock.histogram import FAST_INDEX, FAST_SHIFT
from cyclehttp.clock.stats import EXPECTATION_FAILED, METHOD_NOT_IMPLEMENTED, PARSE_ERROR
from cyclehttp.cycle.context import ConnectionContext
from cyclehttp.cycle.prerendered import StaticResponse
from cyclehttp.cycle.request import Request
from cyclehttp.cycle.response import Response, error_response, render_result
from cyclehttp.cycle.router import ASTERISK
from cyclehttp.cycle.server_state import ServerState
from cyclehttp.cycle.streams import BodySender, LongResponse
from cyclehttp.cycle.targets import HandlerTarget
from cyclehttp.cycle.uploads import STREAM_BUFFER, BodyStream, StreamingRequest
from cyclehttp.cycle.wire import CLOSE, KEEP_ALIVE, KEEP_ALIVE_HTTP10
from cyclehttp.errors import ClientDisconnected, HTTPError

if TYPE_CHECKING:
    from typing import BinaryIO


__all__ = ["HttpProtocol"]

error_log: Final = logging.getLogger("cyclehttp.error")

IDLE: Final = 0
HEAD: Final = 1
BODY: Final = 2
CLOSING: Final = 3

# Why reading is paused (a bit set): the transport resumes only when none is left.
_PAUSED_WRITE: Final = 1
_PAUSED_QUEUE: Final = 2
_PAUSED_BODY: Final = 4  # a streamed request body holds more than bodystream.STREAM_BUFFER

# The interim answer to ``Expect: 100-continue`` (RFC 9110 section 10.1.1); as a queue
# entry's target it is written in its turn and counts as no response.
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

# Slots of HttpProtocol._conditions: the fields a static target's select() decides with.
_IF_NONE_MATCH: Final = 0
_ACCEPT_ENCODING: Final = 1
_RANGE: Final = 2
_IF_RANGE: Final = 3

_SLASH: Final = ord("/")
_QUESTION_MARK: Final = ord("?")

# After an error answer the server shuts its write side and reads (and drops)
# what the client still sends, for at most this long, before closing: closing
# with unread input makes the kernel send RST, which can destroy the answer
# in the client's buffers before it is read (nginx's lingering_close).
LINGER_SECONDS: Final = 2.0

# Answers produced in one go are written as soon as they reach this size, so a
# transport over its high-water mark calls pause_writing before the next request
# runs: one read full of pipelined requests cannot render all their answers at once.
FLUSH_BYTES: Final = 64 * 1024

# The header bytes once the header section is complete: a field that comes after it (the
# trailer section of a chunked body) is then over any max_header_size, which sends it to the
# trailer's cold path without a test on every header; the trailer's own bytes count from here.
TRAILER_MARK: Final = 1 << 62

# Answers produced in one go are joined into one write up to this size; larger ones are
# handed to the transport as they are (uvloop writes them with writev), so a large static
# body shared by every request is never copied, nor held in a copy while a client reads slowly.
JOIN_BYTES: Final = 16 * 1024

# A file that loop.sendfile cannot send is read and written in pieces of this size
# (one piece in flight above the transport's high-water mark at most).
FILE_CHUNK: Final = 256 * 1024


# llhttp's own (strict) Transfer-Encoding errors: codings it rejects while it
# reads the value (``chunked, gzip``, a second header) never reach on_header.
# Any other wording (a future llhttp) still refuses, with 400 instead of 501.
_TRANSFER_CODING_ERRORS: Final = (
    "Invalid `Transfer-Encoding` header value",
    "Request has invalid `Transfer-Encoding`",
)


# RFC 9112 section 3: request-line = method SP request-target SP HTTP-version, where
# method = token (RFC 9110 section 5.6.2); the target is any visible non-space bytes.
_REQUEST_LINE: Final = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}) [\x21-\xff]+ HTTP/1\.[01]\r?\n")


class _Reject(Exception):
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


_INTERNAL_ERROR: Final = error_response(500).freeze()

# What sync handlers return most; none of these is awaitable, so no inspect.isawaitable call.
_PLAIN_RESULTS: Final = frozenset({dict, list, str, bytes, Response})


class HttpProtocol(asyncio.Protocol):
    """An HTTP/1.1 connection served with httptools on an asyncio (uvloop) transport."""

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
        "_static",
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
        self._static = server.router.static
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
        self._context: ConnectionContext | None = None  # what its Requests share; connection_made
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

    # -- connection ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._started_ns = monotonic_ns()
        self._transport = transport  # type: ignore[assignment]  # uvloop's is duck-typed
        server = self._server
        config = server.config
        self._context = ConnectionContext(transport, config, server.app)
        self._stats.connections_accepted += 1
        if self._access is not None:
            self._peer = _peer_host(transport)
        if len(server.connections) >= server.config.max_connections:
            self._state = CLOSING
            data = error_response(503, "Too many connections").render(CLOSE, False)
            transport.write(data)  # type: ignore[attr-defined]
            transport.close()
            self._stats.refused("max_connections", 503)
            self._stats.bytes_sent += len(data)
            if self._access is not None:
                self._access.log(self._peer, None, 503, _body_size(data), 0)
            return
        server.connections.add(self)
        self._since = self._started_ns
        if server.draining:  # accepted just before the listener closed
            self._draining = True
            self._state = CLOSING
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stats.connection_closed(monotonic_ns() - self._started_ns)
        self._server.connections.discard(self)
        self._state = CLOSING
        self._transport = None
        self._queue.clear()
        self._out.clear()
        self._out_size = 0
        stream = self._body
        if stream.__class__ is BodyStream:
            self._body = None
            waiting = stream.waiting
            stream.fail(ClientDisconnected("the client closed the connection during the request body"))
            if waiting:
                # Its handler is the busy task, waiting for the body: it gets ClientDisconnected
                # and ends by itself (cancelling it would raise CancelledError instead).
                return
        if self._busy is not None:
            self._busy.cancel()
            self._busy = None

    def data_received(self, data: bytes) -> None:
        self._stats.bytes_received += len(data)
        state = self._state
        if state == CLOSING:
            return
        self._read_ns = monotonic_ns()  # when this request began, for its timeouts and its latency
        if state == HEAD:
            self._partial += len(data)
        try:
            self._parser.feed_data(data)
            if self._state == HEAD and self._head_bytes + self._partial > self._max_header:
                # One header line (or the request line) still incomplete and too long.
                self._fail(
                    431, f"request headers are larger than {self._max_header} bytes", "max_header_size"
                )
        except HttpParserUpgrade:
            # The request was complete and is answered; llhttp cannot go on
            # after an Upgrade/CONNECT, and there is nothing to upgrade to.
            self._stop_reading()
        except HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                if cause.status is not None:
                    self._fail(cause.status, cause.detail, cause.reason)
            elif isinstance(exc, HttpParserCallbackError) and cause is not None:
                if isinstance(cause, (SystemExit, KeyboardInterrupt)):
                    # From a handler (gunicorn's abort raises SystemExit in the blocked
                    # frame): the process is leaving, let it.
                    raise cause from None
                if not isinstance(cause, Exception):  # a BaseException class of the handler's own
                    self._stats.handler_exceptions += 1
                    error_log.error(
                        "a handler raised %s, which is not an Exception; connection aborted",
                        type(cause).__name__,
                        exc_info=cause,
                    )
                    self._abort()
                    return
                # A parser callback (this module) raised: a bug, not the client's fault.
                self._internal_error(cause)
                return
            else:
                # The data of this read begins the failed request when the read began between
                # requests and completed none (on_message_complete sets _since to _read_ns).
                self._parse_failed(exc, data if state == IDLE and self._since != self._read_ns else None)
        except Exception as exc:  # a bug in this module: lose the connection, not the server
            self._internal_error(exc)
            return
        self._flush()

    def _internal_error(self, exc: BaseException) -> None:
        self._stats.internal_errors += 1
        error_log.error("internal error while parsing a request; closing the connection", exc_info=exc)
        self._abort()

    def eof_received(self) -> bool | None:
        """The client sent FIN: answer what it already sent, then close.

        A FIN ends what the client sends, not what it reads (RFC 9112 section
        9.6), so requests in flight are still answered; with nothing in flight
        the transport closes at once.
        """
        self._state = CLOSING
        stream = self._body
        if stream.__class__ is BodyStream:
            self._body = None
            stream.fail(ClientDisconnected("the client ended its side before the request body was complete"))
        if self._busy is None and not self._queue:
            return None
        self._pause(_PAUSED_QUEUE)
        return True

    def pause_writing(self) -> None:
        """The client is not reading: stop reading its requests until it does (``send_timeout``)."""
        self._write_paused_ns = monotonic_ns()
        self._pause(_PAUSED_WRITE)

    def resume_writing(self) -> None:
        self._resume(_PAUSED_WRITE)
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # a long response's body goes on
        self._drain_queue()
        self._flush()

    # -- parser callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        if self._state == CLOSING:
            raise _Reject
        self._state = HEAD
        self._begin_ns = self._read_ns
        self._fresh = False
        self._url = b""
        self._headers = []
        self._hosts = 0
        self._connection_header = False
        self._head_bytes = 0
        self._partial = 0
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._partial = 0
        if len(self._url) > self._max_url:
            raise _Reject(414, f"the request target is longer than {self._max_url} bytes", "max_url_length")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name)
        self._head_bytes += size + len(value) + 4
        if self._head_bytes > self._max_header:
            # Over the limit, or a trailer field: on_headers_complete adds TRAILER_MARK, so a
            # field after the header section lands here without a test on every header.
            self._over_header_limit(name, value)
            return
        self._headers.append((name, value))
        self._partial = 0
        # One branch per length, the common ones first: a header stops at its own length
        # (User-Agent at 10, Accept-Language at 15) after one name comparison at most.
        if size == 4:
            if name.lower() == b"host":
                self._hosts += 1
        elif size == 10:
            if name.lower() == b"connection":
                self._connection_header = True
        elif size == 14:
            if name.lower() == b"content-length" and value.isdigit() and int(value) > self._max_body:
                raise _Reject(413, f"the request body is larger than {self._max_body} bytes", "max_body_size")
        elif size == 15:
            if name.lower() == b"accept-encoding":
                self._add_condition(_ACCEPT_ENCODING, value)
        elif size == 13:
            if name.lower() == b"if-none-match":
                self._add_condition(_IF_NONE_MATCH, value)
        elif size == 17:
            if name.lower() == b"transfer-encoding":
                self._check_transfer_encoding(value)
        elif size == 16:
            if name.lower() == b"proxy-connection":  # llhttp reads it as Connection
                self._connection_header = True
        elif size == 6:
            if name.lower() == b"expect":
                self._expect = value if self._expect is None else self._expect + b", " + value
        elif size == 5:
            if name.lower() == b"range":
                self._add_condition(_RANGE, value)
        elif size == 8 and name.lower() == b"if-range":
            self._add_condition(_IF_RANGE, value)

    def _over_header_limit(self, name: bytes, value: bytes) -> None:
        """A header over ``max_header_size`` (431), or a field of the trailer section."""
        if self._head_bytes < TRAILER_MARK:
            raise _Reject(431, f"request headers are larger than {self._max_header} bytes", "max_header_size")
        self._on_trailer(name, value)

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        """A trailer field: kept apart from the headers, and never acted on (RFC 9110 section 6.5.2).

        Trailers arrive after the body, so they cannot decide framing, routing,
        Host, cookies or the proxy headers: a trailer ``X-Forwarded-For`` must not
        win over the proxy's header. A handler reads them as ``request.trailers``.
        The trailer section is bounded by ``max_header_size`` like the header section.
        Only a request whose body is collected (a handler's) keeps them; a
        static target's are counted and dropped.

        llhttp itself refuses ``Transfer-Encoding`` and ``Content-Length`` in a
        trailer (400), but reads ``Connection: close`` there and then ignores
        whatever follows the message, which would leave a pipelined request
        unanswered: ``Connection`` and ``Proxy-Connection`` (fields a sender
        must not put in a trailer, RFC 9110 section 6.5.1) are refused too.
        """
        size = len(name)  # counted in _head_bytes already, on top of TRAILER_MARK
        if self._head_bytes - TRAILER_MARK > self._max_header:
            raise _Reject(
                431, f"request trailers are larger than {self._max_header} bytes", "max_header_size"
            )
        if (size == 10 and name.lower() == b"connection") or (
            size == 16 and name.lower() == b"proxy-connection"
        ):
            raise _Reject(400, f"{name.decode('latin-1')} is not allowed in a trailer section")
        if self._body is None:
            return
        if self._trailers is None:
            self._trailers = []
        self._trailers.append((name, value))

    def _add_condition(self, slot: int, value: bytes) -> None:
        """Note a field a static target's ``select`` decides with (``If-None-Match``, ``Accept-Encoding``,
        ``Range``, ``If-Range``), in its slot of ``_conditions``.

        A field sent twice is one value joined with a comma (RFC 9110 section
        5.3): a list for the first two, a ``Range`` or ``If-Range`` that then
        matches nothing and is ignored for the others. ``on_message_complete``
        takes the values and resets the slot (not ``on_message_begin``: one store
        less per request); a request that never completes ends the connection,
        so none leaks into the next.
        """
        conditions = self._conditions
        if conditions is None:
            conditions = self._conditions = [None, None, None, None]
        old = conditions[slot]
        conditions[slot] = value if old is None else old + b", " + value

    def _check_transfer_encoding(self, value: bytes) -> None:
        """Only one ``Transfer-Encoding: chunked`` is accepted (RFC 9112 sections 6.1, 7).

        Stricter than llhttp (which takes ``gzip, chunked`` as chunked) and applied
        on top of it: llhttp stays strict, so what either one refuses is refused.
        """
        if self._parser.get_http_version() == "1.0":
            # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            raise _Reject(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
        if value.strip(b" \t").lower() != b"chunked":
            raise _Reject(501, "only Transfer-Encoding: chunked is supported")
        if sum(len(n) == 17 and n.lower() == b"transfer-encoding" for n, _ in self._headers) > 1:
            raise _Reject(501, "only one Transfer-Encoding: chunked is supported")

    def on_headers_complete(self) -> None:
        parser = self._parser
        keep_alive = parser.should_keep_alive()
        # llhttp keeps a request without a Connection (or Proxy-Connection) header
        # alive only for HTTP/1.1 (of the versions it accepts: 0.9, 1.0, 1.1, 2.0),
        # so the version is known without get_http_version(), which formats a new
        # str on each call.
        version = "1.1" if keep_alive and not self._connection_header else parser.get_http_version()
        if version != "1.1" and version != "1.0":
            if version == "0.9":
                raise _Reject(400, "HTTP/0.9 requests are not supported")
            raise _Reject(505, f"HTTP/{version} is not supported; use HTTP/1.1")
        if self._hosts != 1 and (self._hosts or version == "1.1"):
            # RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request
            # without Host, and to any request with more than one.
            raise _Reject(400, "missing Host header" if not self._hosts else "more than one Host header")
        self._head_bytes = TRAILER_MARK  # what on_header receives from now on is a trailer field
        method = parser.get_method()
        url = self._url
        if url and url[0] == _SLASH:
            if _QUESTION_MARK in url:  # an int needle: a third of the cost of find(b"?")
                path, _, query = url.partition(b"?")
            else:
                path, query = url, b""
        else:
            path, query = self._absolute_form(url)
        entry = self._static.get(path)
        if entry is not None:
            self._index = entry.methods.get(method, entry.not_allowed)
            self._params = None
        else:
            self._index, self._params = self._server.router._lookup_dynamic(method, path)
        if keep_alive and not self._draining:
            self._mode = KEEP_ALIVE if version == "1.1" else KEEP_ALIVE_HTTP10
        else:
            self._mode = CLOSE
        self._method = method
        self._head = method == b"HEAD"
        self._state = BODY
        if self._expect is not None:
            self._expectation(version, path, query)
        target = self._targets[self._index]
        if target.__class__ is HandlerTarget or self._access is not None:
            self._path = path
            self._query = query
            self._version = version
            if target.__class__ is HandlerTarget and target.stream_body:
                self._start_stream(target)
            else:
                self._body = []
        else:
            self._body = None

    def _expectation(self, version: str, path: bytes, query: bytes) -> None:
        """``Expect`` (RFC 9110 section 10.1.1), once the request is routed.

        HTTP/1.0: ignored. Anything but ``100-continue``: 417. A request without a
        body: nothing to continue. A static target (404, 405 too): its final answer
        now and the connection closes, the client sends no body. A handler: 100
        Continue, when the body is wanted (a stream_body handler's first read),
        or, buffered, now (in its turn behind the answers before it).
        """
        expect = self._expect
        self._expect = None
        if version == "1.0" or expect is None:
            return
        if expect.strip(b" \t").lower() != b"100-continue":
            raise _Reject(417, "the only expectation supported is 100-continue", EXPECTATION_FAILED)
        if not _has_body(self._headers):
            return
        target = self._targets[self._index]
        if target.__class__ is not HandlerTarget:
            # The final answer instead of 100 Continue: no body to wait for, then close.
            self._conditions = None
            self._state = CLOSING
            self._linger = True  # the body may come all the same
            self._pause(_PAUSED_QUEUE)
            request = None
            if self._access is not None:  # the line needs the request; its body is never read
                request = Request(
                    self._method,
                    path,
                    query,
                    self._headers,
                    b"",
                    self._params,
                    version,
                    self._context,
                )
            entry = (target, request, CLOSE, self._head, self._begin_ns)
            if self._busy is None and not self._queue and not self._paused & _PAUSED_WRITE:
                self._execute(*entry)
            else:
                self._queue.append(entry)
            raise _Reject  # stop parsing: nothing more is read from this client
        self._continue_pending = True
        if not target.stream_body:
            if self._busy is None and not self._queue:
                self.send_continue()
            else:
                self._queue.append((_CONTINUE, None, KEEP_ALIVE, False, 0))

    def _start_stream(self, target: HandlerTarget) -> None:
        """A stream_body route: its handler runs now (or in its turn) and reads the body as it comes."""
        stream = BodyStream(self)
        self._body = stream
        request = StreamingRequest(
            self._method,
            self._path,
            self._query,
            self._headers,
            stream,
            self._params,
            self._version,
            self._context,
        )
        entry = (target, request, self._mode, self._head, self._begin_ns)
        if self._busy is None and not self._queue and not self._paused & _PAUSED_WRITE:
            self._execute(*entry)
        else:
            self._queue.append(entry)
            if len(self._queue) >= self._max_queue:
                self._pause(_PAUSED_QUEUE)

    def _absolute_form(self, url: bytes) -> tuple[bytes, bytes]:
        """Path and query of an absolute-form target (``http://host/path``), or ``*``; 400 otherwise.

        ``*`` (the asterisk form, RFC 9112 section 3.2.4) is for ``OPTIONS`` only: it
        selects the router's server-wide answer, whose ``Allow`` lists every method served.
        """
        if url == ASTERISK:
            if self._parser.get_method() != b"OPTIONS":
                raise _Reject(400, "the request target '*' is only allowed with OPTIONS")
            return ASTERISK, b""
        try:
            parsed = parse_url(url)
        except HttpParserError:
            parsed = None
        if parsed is None or parsed.schema not in (b"http", b"https") or not parsed.host:
            raise _Reject(400, "the request target must be a path starting with '/'")
        return parsed.path or b"/", parsed.query or b""

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body:
            raise _Reject(413, f"the request body is larger than {self._max_body} bytes", "max_body_size")
        if self._body is not None:
            self._body.append(body)

    def on_message_complete(self) -> None:
        mode = self._mode
        self._since = self._read_ns  # idle from here (bytes that start no request do not count)
        if mode == CLOSE:
            self._state = CLOSING
            self._pause(_PAUSED_QUEUE)
        else:
            self._state = IDLE
        target = self._targets[self._index]
        conditions = self._conditions
        if conditions is not None:
            # If-None-Match or Accept-Encoding: on a 2xx static route, its 304 or an encoded
            # variant, chosen now so a queued request keeps it. Without either field this
            # test is all it costs.
            self._conditions = None
            if target.__class__ is StaticResponse and target.etag is not None:
                if_none_match, accept_encoding, range_field, if_range = conditions
                target = target.select(
                    if_none_match, accept_encoding, range_field if self._method == b"GET" else None, if_range
                )
        if (
            self._body is None  # a static target, and no access log
            and self._busy is None
            and not self._queue
            and not self._paused & _PAUSED_WRITE
            and not self._draining
        ):
            # The common case, _execute and _sent inlined: a static answer with nothing ahead of it.
            static: StaticResponse = target  # type: ignore[assignment]  # no _body: not a handler
            static.hits += 1
            data = static.head_buffers[mode] if self._head else static.buffers[mode]
            self._out.append(data)
            self._out_size += len(data)
            if static.split and not self._head:
                self._out.append(static.body)
                self._out_size += len(static.body)
            if self._timed:
                if self._begin_ns == self._read_ns:
                    self._batch += 1
                else:
                    self._latency.record(monotonic_ns() - self._begin_ns)
            if mode == CLOSE:
                self._close_after_flush = True
            elif self._out_size >= FLUSH_BYTES:
                self._flush()
            return
        request: Request | None = None
        body = self._body
        trailers = self._trailers
        if trailers is not None:
            self._trailers = None
        if body.__class__ is BodyStream:  # a stream_body route: its handler runs already
            self._body = None
            body.finish(trailers)
            return
        if body is not None:
            request = Request(
                self._method,
                self._path,
                self._query,
                self._headers,
                b"".join(body),  # type: ignore[arg-type]
                self._params,
                self._version,
                self._context,
            )
            if trailers is not None:
                request.raw_trailers = trailers
            self._body = None
        if self._busy is None and not self._queue and not self._paused & _PAUSED_WRITE:
            self._execute(target, request, mode, self._head, self._begin_ns)
        else:
            self._queue.append((target, request, mode, self._head, self._begin_ns))
            if len(self._queue) >= self._max_queue:
                self._pause(_PAUSED_QUEUE)

    # -- executing requests -------------------------------------------------

    def _execute(self, target: Any, request: Request | None, mode: int, head: bool, start: int) -> None:
        """Answer one request; ``start`` is the clock of the read that brought its first byte."""
        if target.__class__ is StaticResponse:
            if self._draining:
                mode = CLOSE
            target.hits += 1
            data = target.head_buffers[mode] if head else target.buffers[mode]
            self._out.append(data)
            size = len(data)
            if target.split and not head:
                self._out.append(target.body)
                size += len(target.body)
            self._sent(mode, size, start)
            if request is not None:  # only built for a static target when the access log is on
                self._log_access(request, target.status, 0 if head else len(target.body), start)
        elif target.__class__ is bytes:  # a pre-rendered error that ends the connection
            if target is _CONTINUE:
                self.send_continue()
                return
            self._out.append(target)
            self._sent(CLOSE, len(target), start)
            if self._access is not None:
                self._log_access(None, int(target[9:12]), _body_size(target), start)
        else:
            assert request is not None
            self._call(target, request, mode, head, start)

    def _call(self, target: HandlerTarget, request: Request, mode: int, head: bool, start: int) -> None:
        called = monotonic_ns() if self._timed else 0
        try:
            result = target.handler(request)
        except Exception as exc:
            data = self._handler_failed(exc, target, request, mode, head)
        else:
            if result.__class__ not in _PLAIN_RESULTS or target.is_async:
                if target.is_async or inspect.isawaitable(result):
                    self._busy = self._loop.create_task(
                        self._call_async(result, target, request, mode, head, start, called)
                    )
                    return
                if isinstance(result, LongResponse):
                    if called:
                        self._handler_time.record(monotonic_ns() - called)
                    sending = self._start_long(result, target, request, mode, head, start)
                    if sending is not None:
                        self._busy = self._loop.create_task(self._send_long(*sending, target, request, start))
                    return
            try:
                data = render_result(result, mode if not self._draining else CLOSE, head)
            except Exception as exc:
                data = self._handler_failed(exc, target, request, mode, head)
        if called:
            # One clock read ends both the handler's time (its call and the rendering of
            # what it returned) and the request's latency: the answer is written at the end
            # of this read. Both LogHistogram.record calls are inlined (histogram.py).
            done = monotonic_ns()
            try:
                self._handler_counts[FAST_INDEX[(done - called) >> FAST_SHIFT]] += 1
            except IndexError:  # beyond the table (histogram.FAST_INDEX): the exact way
                self._handler_time.record(done - called)
            try:
                self._latency_counts[FAST_INDEX[(done - start) >> FAST_SHIFT]] += 1
            except IndexError:
                self._latency.record(done - start)
        self._answered(target, request, data, mode, start, called != 0)

    async def _call_async(
        self,
        awaitable: Any,
        target: HandlerTarget,
        request: Request,
        mode: int,
        head: bool,
        start: int,
        called: int,
    ) -> None:
        try:
            try:
                result = await awaitable
            finally:
                if request.__class__ is StreamingRequest:
                    mode = self._stream_ended(request, mode)
            if isinstance(result, LongResponse):
                if called:
                    self._handler_time.record(monotonic_ns() - called)
                if self._transport is None or mode < 0:
                    await self._discard_long(result, request)
                    if self._transport is None:
                        return
                    result = None  # the server answers the failed body: nothing of the handler's goes out
                else:
                    sending = self._start_long(result, target, request, mode, head, start)
                    if sending is not None:
                        await self._send_long(*sending, target, request, start)  # as _busy
                    else:
                        self._busy = None
                        self._since = monotonic_ns()
                        self._drain_queue()
                        self._flush()
                    return
            data = b"" if mode < 0 else render_result(result, mode if not self._draining else CLOSE, head)
        except Exception as exc:
            if request.__class__ is StreamingRequest and mode < 0:
                data = b""  # the body failed (stream's error): the server answers, or the client left
            else:
                data = self._handler_failed(exc, target, request, mode, head)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, or a class of the handler's own
            self._busy = None
            self._abort()  # no answer can follow, and the connection must not wait for one
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise  # the process is leaving: let it
            self._stats.handler_exceptions += 1
            error_log.error(
                "handler %s raised %s, which is not an Exception; connection aborted",
                target.name,
                type(exc).__name__,
                exc_info=exc,
            )
            return
        if called:
            self._handler_time.record(monotonic_ns() - called)
        self._busy = None
        if self._transport is None:
            return
        if mode < 0:  # the server answers the failed body itself (queued by _fail)
            self._since = monotonic_ns()
            self._drain_queue()
            self._flush()
            return
        self._since = monotonic_ns()  # idle from now on, not from when the request was read
        self._answered(target, request, data, mode, start, False)
        self._drain_queue()
        self._flush()

    def _stream_ended(self, request: StreamingRequest, mode: int) -> int:
        """A stream_body handler returned (or raised): the mode its answer goes out with.

        -1: the body failed (413, 408, 400, the client left); the handler's answer
        is dropped, the server's error answer (queued by ``_fail``) stands. The body
        not all received: the answer closes the connection (``Connection: close``),
        and what the client still sends is read and dropped for ``LINGER_SECONDS``
        (lingering close), so keep-alive framing never depends on an unread body.
        """
        stream = request._stream
        self._continue_pending = False
        if stream.error is not None:
            mode = -1
        elif not stream.complete:
            if self._body is stream:
                self._body = None
            stream.fail(ClientDisconnected("the handler returned before reading the whole body"))
            self._state = CLOSING
            self._linger = True
            mode = CLOSE
        self._resume_body()
        return mode

    def pause_body(self) -> None:
        """A stream_body's buffer is over its bound: stop reading until its handler takes some."""
        self._pause(_PAUSED_BODY)

    def body_consumed(self) -> None:
        """A stream_body handler took chunks: read again unless the body being read is still full."""
        if self._paused & _PAUSED_BODY:
            self._resume_body()

    def _resume_body(self) -> None:
        body = self._body
        if body.__class__ is not BodyStream or body.buffered <= STREAM_BUFFER // 2:
            if self._paused & _PAUSED_BODY:
                self._since = monotonic_ns()  # the body's silence is timed from here, not from the pause
            self._resume(_PAUSED_BODY)

    def send_continue(self) -> None:
        """Write ``100 Continue`` if one is owed (``Expect: 100-continue``): the body is wanted now."""
        if not self._continue_pending:
            return
        self._continue_pending = False
        if self._transport is None or self._state == CLOSING:
            return
        self._out.append(_CONTINUE)
        self._out_size += len(_CONTINUE)
        self._flush()

    def _answered(
        self, target: HandlerTarget, request: Request, data: bytes, mode: int, start: int, timed: bool
    ) -> None:
        target.responses[data[9] - 48] += 1  # the status's first digit: b"HTTP/1.1 200 ..."[9]
        self._out.append(data)
        self._sent(mode, len(data), 0 if timed else start)
        if self._access is not None:
            self._log_access(request, int(data[9:12]), _body_size(data), start)

    # -- long responses: streams and files (see streaming.py) ----------------

    def _start_long(
        self,
        response: LongResponse,
        target: HandlerTarget,
        request: Request,
        mode: int,
        head: bool,
        start: int,
    ) -> tuple[BodySender, LongResponse, int, int] | None:
        """Put a long response's head in ``_out``, counted and timed; return what ``_send_long`` needs.

        The request's latency ends here, when the head is handed on (the body may
        take hours); the response is counted once, by its status, here too.
        """
        if self._draining:
            mode = CLOSE
        try:
            data, mode, sender = response.start(request, mode, head)
        except Exception as exc:
            self._answered(
                target, request, self._handler_failed(exc, target, request, mode, head), mode, start, False
            )
            return None
        if sender is None:  # nothing follows the head (HEAD, 304, 416, a small file): a plain answer
            self._answered(target, request, data, mode, start, False)
            return None
        target.responses[data[9] - 48] += 1
        self._long = response
        self._out.append(data)
        self._out_size += len(data)
        if self._timed:
            if start == self._read_ns:
                self._batch += 1
            else:
                self._latency.record(monotonic_ns() - start)
        return sender, response, mode, int(data[9:12])

    async def _send_long(
        self,
        sender: BodySender,
        response: LongResponse,
        mode: int,
        status: int,
        target: HandlerTarget,
        request: Request,
        start: int,
    ) -> None:
        """Send a long response's body as the connection's busy task, then go on with the queue.

        The client gone: the task is cancelled (``connection_lost``), the sender's
        ``finally`` closes its iterator or file, nothing is logged. The body failing
        after the head went out: logged, and the connection aborted, so the client
        sees a truncated body rather than a wrong one. Shutdown's deadline
        (``end_long``): a chunked stream gets its last chunk, then the close.
        """
        sent = 0
        try:
            self._flush()  # the head, after the answers before it
            sent = await sender(self)
        except asyncio.CancelledError:
            last = response.last_chunk() if self._ending else None
            transport = self._transport
            if last is None or transport is None:
                self._long = None
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            transport.write(last)
            self._stats.bytes_sent += len(last)
            mode = CLOSE
        except Exception as exc:
            self._long = None
            self._busy = None
            if self._transport is None or isinstance(exc, ConnectionError):
                error_log.debug("client went away during the body of %s: %r", target.name, exc)
            else:
                self._stats.handler_exceptions += 1
                error_log.error(
                    "the body of %s's response failed after its head was sent; aborting the connection",
                    target.name,
                    exc_info=exc,
                )
            self._abort()
            return
        self._long = None
        self._busy = None
        if self._transport is None:
            return
        if self._access is not None:
            self._log_access(request, status, sent, start)
        self._since = monotonic_ns()
        if mode == CLOSE or self._draining:
            self._close_after_flush = True
            self._queue.clear()
        self._drain_queue()
        self._flush()

    async def _discard_long(self, response: LongResponse, request: Request) -> None:
        """Release what an unsent long response holds (the client left while its handler ran)."""
        try:
            sender = response.start(request, CLOSE, True)[2]
            if sender is not None:
                await sender(self)
        except Exception as exc:
            error_log.debug("closing an unsent response failed: %r", exc)

    def write_body(self, data: bytes) -> None:
        """Part of a long response's body to the transport (``BodySink``)."""
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("the client closed the connection")
        transport.write(data)
        self._stats.bytes_sent += len(data)

    async def writable(self) -> None:
        """Wait while the client is not reading (``BodySink``); otherwise let the loop turn once.

        The turn keeps one fast stream from starving the other connections; the
        wait keeps a stream from buffering more than the transport's high-water mark.
        """
        if not self._paused & _PAUSED_WRITE:
            await asyncio.sleep(0)
            return
        while self._paused & _PAUSED_WRITE and self._transport is not None:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._write_waiter = waiter
            try:
                await waiter
            finally:
                self._write_waiter = None

    async def send_file(self, file: BinaryIO, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` (``BodySink``).

        ``loop.sendfile`` (zero-copy ``os.sendfile``) where the loop and transport
        support it (asyncio's loop on plain TCP); otherwise (uvloop has no
        ``loop.sendfile``; TLS) reads of ``FILE_CHUNK`` bytes, each written after
        the client has read enough of the one before.
        """
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("the client closed the connection")
        try:
            sent: int = await self._loop.sendfile(transport, file, offset, count, fallback=False)
        except (NotImplementedError, RuntimeError):  # SendfileNotAvailableError is a RuntimeError
            pass
        else:
            self._stats.bytes_sent += sent
            if sent != count:
                raise EOFError(f"{file.name!r} shrank while it was sent ({sent} of {count} bytes)")
            return sent
        file.seek(offset)
        sent = 0
        while sent < count:
            data = file.read(min(FILE_CHUNK, count - sent))
            if not data:
                raise EOFError(f"{file.name!r} shrank while it was sent ({sent} of {count} bytes)")
            self.write_body(data)
            sent += len(data)
            await self.writable()
        return sent

    def end_long(self) -> bool:
        """Shutdown's graceful deadline: stop the body being sent; False when there is none.

        A chunked stream ends cleanly (its iterator closed, the last chunk written,
        the connection closed); any other body is cut and the connection aborted.
        """
        if self._long is None or self._busy is None or self._transport is None:
            return False
        self._ending = True
        self._busy.cancel()
        return True

    def _log_access(self, request: Request | None, status: int, size: int, start: int) -> None:
        assert self._access is not None
        self._access.log(self._peer, request, status, size, start)

    def _handler_failed(
        self, exc: Exception, target: HandlerTarget, request: Request | None, mode: int, head: bool
    ) -> bytes:
        """The server's own answer to a handler's exception (the error path: nothing here is hot).

        Plain text, or JSON when the request's ``Accept`` prefers it; with
        ``debug`` a 500 carries the traceback.
        """
        if self._draining:
            mode = CLOSE
        accept = None if request is None else request.headers.get("accept")
        if isinstance(exc, HTTPError):
            return error_response(exc.status, exc.detail, exc.headers, accept=accept).render(mode, head)
        self._stats.handler_exceptions += 1
        error_log.error("handler %s failed", target.name, exc_info=exc)
        debug = self._server.config.debug
        if accept is None and not debug:
            return _INTERNAL_ERROR.render(mode, head)
        trace = "".join(traceback.format_exception(exc)) if debug else None
        return error_response(500, accept=accept, trace=trace).render(mode, head)

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
        while queue and self._busy is None and not self._paused & _PAUSED_WRITE:
            self._execute(*queue.popleft())
        if self._state == CLOSING:
            if not queue and self._busy is None:
                self._close_after_flush = True
        elif self._paused & _PAUSED_QUEUE and len(queue) <= self._max_queue // 2:
            self._resume(_PAUSED_QUEUE)

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

    # -- errors and shutdown ------------------------------------------------

    def _parse_failed(self, exc: HttpParserError, request_data: bytes | None) -> None:
        """Answer an error llhttp itself found (not one raised by a callback here).

        llhttp knows a fixed list of methods and calls any other one invalid.
        RFC 9110 section 9.1 wants 501 for a method the server does not
        implement and 400 only for a request line that is not one: when the
        failed request's bytes are at hand (``request_data``: it began this
        read) and its request line is well-formed with a token for a method,
        the answer is 501. A request line split across reads before its
        method ends is answered 400.
        """
        if self._state == CLOSING:
            return  # parsing stopped on purpose after a final request
        reason = PARSE_ERROR
        if any(text in str(exc) for text in _TRANSFER_CODING_ERRORS):
            status, detail = 501, "only Transfer-Encoding: chunked is supported"
        elif (
            isinstance(exc, HttpParserInvalidMethodError)
            and request_data is not None
            and (match := _REQUEST_LINE.match(request_data.lstrip(b"\r\n")))
        ):
            method = match.group(1).decode("ascii")
            status, detail, reason = 501, f"the method {method} is not implemented", METHOD_NOT_IMPLEMENTED
        else:
            status, detail = 400, f"Invalid HTTP request: {exc}"
        self._fail(status, detail, reason)

    def _fail(self, status: int, detail: str, reason: str) -> None:
        """Answer ``status`` after the requests already read, then close.

        ``reason`` (a Config field, or ``PARSE_ERROR``) is what the metrics count.
        """
        error_log.debug("rejecting request with %d: %s", status, detail)
        self._stats.refused(reason, status)
        self._continue_pending = False
        stream = self._body
        if stream.__class__ is BodyStream:  # its handler runs: it gets the error, the server answers
            self._body = None
            stream.fail(HTTPError(status, detail))
        self._linger = True
        data = error_response(status, detail).render(CLOSE, False)
        start = self._begin_ns if self._state == HEAD or self._state == BODY else self._read_ns
        self._state = CLOSING
        self._pause(_PAUSED_QUEUE)
        if self._busy is None and not self._queue:
            self._execute(data, None, CLOSE, False, start)
        else:
            self._queue.append((data, None, CLOSE, False, start))

    def _stop_reading(self) -> None:
        self._state = CLOSING
        self._pause(_PAUSED_QUEUE)
        self._drain_queue()

    def _abort(self) -> None:
        self._state = CLOSING
        if self._transport is not None:
            self._transport.abort()

    def check_timeouts(self, now: int) -> None:
        """Called about once a second by the server with ``monotonic_ns()``: enforce the timeouts.

        A request's header time runs from the read that brought its first byte
        (``_begin_ns``); a body's silence from the last read; idleness from the
        end of the last request, of its async answer or of the error answer
        (``_since``); a client that does not read, from ``pause_writing``
        (``send_timeout``: the connection is aborted, the answer cannot go out).
        """
        state = self._state
        config = self._server.config
        if self._paused & _PAUSED_WRITE and now - self._write_paused_ns > config.send_timeout * 1e9:
            # The client has not read for send_timeout: its slot is worth more than its answer.
            error_log.debug("client did not read for %g s; aborting the connection", config.send_timeout)
            self._stats.timeouts["send_timeout"] += 1
            self._abort()
            return
        if state == HEAD:
            if now - self._begin_ns > config.header_timeout * 1e9:
                self._fail(
                    408, f"request headers not received within {config.header_timeout:g} s", "header_timeout"
                )
                self._flush()
        elif state == BODY:
            if self._paused & _PAUSED_BODY or self._continue_pending:
                pass  # the server's turn: a handler not reading its body (yet)
            elif now - max(self._read_ns, self._since) > config.body_timeout * 1e9:
                self._fail(408, f"request body stalled for {config.body_timeout:g} s", "body_timeout")
                self._flush()
        elif state == CLOSING:
            # Linger from when the error answer went out, not while answers before it are still
            # running or streaming (they would be cut off).
            if (
                self._linger
                and self._busy is None
                and not self._queue
                and now - self._since > LINGER_SECONDS * 1e9
                and self._transport is not None
            ):
                self._transport.close()
        elif state == IDLE and self._busy is None and not self._queue and not self._out:
            limit = config.header_timeout if self._fresh else config.keep_alive_timeout
            if now - self._since > limit * 1e9 and self._transport is not None:
                self._stats.timeouts["header_timeout" if self._fresh else "keep_alive_timeout"] += 1
                self._state = CLOSING
                self._transport.close()

    def is_idle(self) -> bool:
        """True between requests: nothing half-read, running or unsent."""
        return self._state == IDLE and self._busy is None and not self._queue and not self._out

    def shutdown(self) -> None:
        """Close now if idle; otherwise answer what is in flight with ``Connection: close``."""
        self._draining = True
        if self._transport is None:
            return
        if self.is_idle() or (
            self._linger
            and self._state == CLOSING
            and not self._close_after_flush
            and self._busy is None
            and not self._queue
        ):
            self._state = CLOSING
            self._transport.close()

    # -- flow control -------------------------------------------------------

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


def _peer_host(transport: asyncio.BaseTransport) -> str:
    """The client's address for the access log (``-`` when unknown, e.g. a Unix socket)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "-"


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """A request body follows these headers: Transfer-Encoding, or a Content-Length over 0."""
    for name, value in headers:
        size = len(name)
        if size == 17 and name.lower() == b"transfer-encoding":
            return True
        if size == 14 and name.lower() == b"content-length" and value.strip(b" \t") not in (b"0", b""):
            return True
    return False


def _body_size(message: bytes) -> int:
    """Body bytes of a rendered response (what the access log's size field counts)."""
    return len(message) - message.index(b"\r\n\r\n") - 4

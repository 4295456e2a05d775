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

The read side has one explicit state (``cycle.states``: IDLE, HEAD, BODY,
CLOSING, and the table of its transitions); the handler side is ``_busy`` (the
task of the async handler running, or None) and ``_queue`` (requests parsed but
not yet executed). Reading is paused while the queue is full or the transport's
write buffer is over its high-water mark, so neither can grow without bound.

This module is the hot path: ``data_received -> callbacks ->
on_message_complete -> _execute/_call -> _flush``, kept whole so that a request
makes no call it can do without. The cold paths are the classes it is made of:
``cycle.core`` (the fields and the shared primitives), ``cycle.failures`` (error
answers, timeouts, shutdown), ``cycle.uploads`` (``stream_body`` routes and
``Expect: 100-continue``) and ``cycle.sending`` (the bodies of streams and files).

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
from time import monotonic_ns
from typing import Any, Final

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade

from cyclehttp.clock.histogram import FAST_INDEX, FAST_SHIFT
from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.core import CONTINUE, FLUSH_BYTES, Refused
from cyclehttp.cycle.failures import error_log
from cyclehttp.cycle.framing import (
    ACCEPT_ENCODING,
    IF_NONE_MATCH,
    IF_RANGE,
    RANGE,
    TRAILER_MARK,
    FramingChecks,
)
from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.request import Request
from cyclehttp.cycle.request_stream import BodyStream, StreamingRequest
from cyclehttp.cycle.response import Response, error_response, render_result
from cyclehttp.cycle.response_stream import LongResponse
from cyclehttp.cycle.states import BODY, CLOSING, HEAD, IDLE, PAUSED_QUEUE, PAUSED_WRITE
from cyclehttp.cycle.targets import HandlerTarget
from cyclehttp.cycle.wire import CLOSE, KEEP_ALIVE, KEEP_ALIVE_HTTP10, body_size
from cyclehttp.errors import ClientDisconnected

__all__ = ["HttpProtocol"]

_SLASH: Final = ord("/")
_QUESTION_MARK: Final = ord("?")

# What sync handlers return most; none of these is awaitable, so no inspect.isawaitable call.
_PLAIN_RESULTS: Final = frozenset({dict, list, str, bytes, Response})


@mypyc_attr(allow_interpreted_subclasses=True)
class HttpProtocol(FramingChecks):
    """An HTTP/1.1 connection served with httptools on an asyncio (uvloop) transport."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._started_ns = monotonic_ns()
        self._transport = transport  # type: ignore[assignment]  # uvloop's is duck-typed
        server = self._server
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
                self._access.log(self._peer, None, 503, body_size(data), 0)
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
            if isinstance(cause, Refused):
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
                    self.abort()
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
        self._pause(PAUSED_QUEUE)
        return True

    def pause_writing(self) -> None:
        """The client is not reading: stop reading its requests until it does (``send_timeout``)."""
        self._write_paused_ns = monotonic_ns()
        self._pause(PAUSED_WRITE)

    def resume_writing(self) -> None:
        self._resume(PAUSED_WRITE)
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # a long response's body goes on
        self._drain_queue()
        self._flush()

    def on_message_begin(self) -> None:
        if self._state == CLOSING:
            raise Refused
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
            raise Refused(414, f"the request target is longer than {self._max_url} bytes", "max_url_length")

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
                raise Refused(413, f"the request body is larger than {self._max_body} bytes", "max_body_size")
        elif size == 15:
            if name.lower() == b"accept-encoding":
                self._add_condition(ACCEPT_ENCODING, value)
        elif size == 13:
            if name.lower() == b"if-none-match":
                self._add_condition(IF_NONE_MATCH, value)
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
                self._add_condition(RANGE, value)
        elif size == 8 and name.lower() == b"if-range":
            self._add_condition(IF_RANGE, value)

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
                raise Refused(400, "HTTP/0.9 requests are not supported")
            raise Refused(505, f"HTTP/{version} is not supported; use HTTP/1.1")
        if self._hosts != 1 and (self._hosts or version == "1.1"):
            # RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request
            # without Host, and to any request with more than one.
            raise Refused(400, "missing Host header" if not self._hosts else "more than one Host header")
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
        entry = self._exact.get(path)
        if entry is not None:
            self._index = entry.methods.get(method, entry.not_allowed)
            self._params = None
        else:
            self._index, self._params = self._server.router.lookup_pattern(method, path)
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

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body:
            raise Refused(413, f"the request body is larger than {self._max_body} bytes", "max_body_size")
        if self._body is not None:
            self._body.append(body)

    def on_message_complete(self) -> None:
        mode = self._mode
        self._since = self._read_ns  # idle from here (bytes that start no request do not count)
        if mode == CLOSE:
            self._state = CLOSING
            self._pause(PAUSED_QUEUE)
        else:
            self._state = IDLE
        target = self._targets[self._index]
        conditions = self._conditions
        if conditions is not None:
            # If-None-Match or Accept-Encoding: on a 2xx static route, its 304 or an encoded
            # variant, chosen now so a queued request keeps it. Without either field this
            # test is all it costs.
            self._conditions = None
            if target.__class__ is PrerenderedResponse and target.etag is not None:
                if_none_match, accept_encoding, range_field, if_range = conditions
                target = target.select(
                    if_none_match, accept_encoding, range_field if self._method == b"GET" else None, if_range
                )
        if (
            self._body is None  # a static target, and no access log
            and self._busy is None
            and not self._queue
            and not self._paused & PAUSED_WRITE
            and not self._draining
        ):
            # The common case, _execute and _sent inlined: a static answer with nothing ahead of it.
            static: PrerenderedResponse = target  # type: ignore[assignment]  # no _body: not a handler
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
                self._context or self._new_context(),
            )
            if trailers is not None:
                request.raw_trailers = trailers
            self._body = None
        if self._busy is None and not self._queue and not self._paused & PAUSED_WRITE:
            self._execute(target, request, mode, self._head, self._begin_ns)
        else:
            self._queue.append((target, request, mode, self._head, self._begin_ns))
            if len(self._queue) >= self._max_queue:
                self._pause(PAUSED_QUEUE)

    def _execute(self, target: Any, request: Request | None, mode: int, head: bool, start: int) -> None:
        """Answer one request; ``start`` is the clock of the read that brought its first byte."""
        if target.__class__ is PrerenderedResponse:
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
            if target is CONTINUE:
                self.send_continue()
                return
            self._out.append(target)
            self._sent(CLOSE, len(target), start)
            if self._access is not None:
                self._log_access(None, int(target[9:12]), body_size(target), start)
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
        body_failed = False  # a stream_body request whose body failed: the server answers it
        try:
            try:
                result = await awaitable
            finally:
                if isinstance(request, StreamingRequest):
                    mode, body_failed = self._stream_ended(request, mode)
            if isinstance(result, LongResponse):
                if called:
                    self._handler_time.record(monotonic_ns() - called)
                if self._transport is None or body_failed:
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
            data = b"" if body_failed else render_result(result, mode if not self._draining else CLOSE, head)
        except Exception as exc:
            # the body failed (the stream's error): the server answers, or the client left
            data = b"" if body_failed else self._handler_failed(exc, target, request, mode, head)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, or a class of the handler's own
            self._busy = None
            self.abort()  # no answer can follow, and the connection must not wait for one
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
        if body_failed:  # the server answers the failed body itself (queued by _fail)
            self._since = monotonic_ns()
            self._drain_queue()
            self._flush()
            return
        self._since = monotonic_ns()  # idle from now on, not from when the request was read
        self._answered(target, request, data, mode, start, False)
        self._drain_queue()
        self._flush()

    def _answered(
        self, target: HandlerTarget, request: Request, data: bytes, mode: int, start: int, timed: bool
    ) -> None:
        target.responses[data[9] - 48] += 1  # the status's first digit: b"HTTP/1.1 200 ..."[9]
        self._out.append(data)
        self._sent(mode, len(data), 0 if timed else start)
        if self._access is not None:
            self._log_access(request, int(data[9:12]), body_size(data), start)


def _peer_host(transport: asyncio.BaseTransport) -> str:
    """The client's address for the access log (``-`` when unknown, e.g. a Unix socket)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "-"

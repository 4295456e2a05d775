"""``UploadHandling``: request bodies read while their handler runs, and ``Expect: 100-continue``.

A ``stream_body`` route's handler runs at ``on_headers_complete`` (or queues
there, in order): the connection's ``_body`` is then a ``BodyStream`` that
``on_body`` appends to like the buffered list, so the callbacks do not branch.
The stream holds ``STREAM_BUFFER`` bytes before reading pauses (``PAUSED_BODY``);
the handler taking chunks resumes it. A limit, timeout or parse error while it
is read fails the stream with ``HTTPError`` and the server answers that status
(``_fail``), dropping the handler's answer; the client leaving fails it with
``ClientDisconnected`` and the handler ends by itself. A handler that returns
before the body is all in answers with ``Connection: close`` and a lingering
close. The request is the busy task until its handler returns, so requests
pipelined after it queue as behind any async handler.

``Expect: 100-continue`` is noted in ``on_header`` and decided once the request
is routed (``_expectation``): 417 for other expectations; a static target (404,
405 included) answers at once and closes, the body unread; a handler route owes
a ``100 Continue``, written in order when the body is wanted (a buffered route:
now; a streamed one: its first read). HTTP/1.0 ignores Expect.
"""

from __future__ import annotations

from time import monotonic_ns

from cyclehttp.clock.stats import EXPECTATION_FAILED
from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.core import CONTINUE, Refused
from cyclehttp.cycle.failures import FailureHandling
from cyclehttp.cycle.request import Request
from cyclehttp.cycle.request_stream import STREAM_BUFFER, BodyStream, StreamingRequest
from cyclehttp.cycle.states import CLOSING, PAUSED_BODY, PAUSED_QUEUE
from cyclehttp.cycle.targets import HandlerTarget
from cyclehttp.cycle.wire import CLOSE, KEEP_ALIVE
from cyclehttp.errors import ClientDisconnected

__all__ = ["UploadHandling"]


@mypyc_attr(allow_interpreted_subclasses=True)
class UploadHandling(FailureHandling):
    """``stream_body`` routes and ``Expect: 100-continue`` (see the module docstring)."""

    __slots__ = ()

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
            raise Refused(417, "the only expectation supported is 100-continue", EXPECTATION_FAILED)
        if not _has_body(self._headers):
            return
        target = self._targets[self._index]
        if target.__class__ is not HandlerTarget:
            # The final answer instead of 100 Continue: no body to wait for, then close.
            self._conditions = None
            self._state = CLOSING
            self._linger = True  # the body may come all the same
            self._pause(PAUSED_QUEUE)
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
                    self._context or self._new_context(),
                )
            self._execute_or_queue((target, request, CLOSE, self._head, self._begin_ns))
            raise Refused  # stop parsing: nothing more is read from this client
        self._continue_pending = True
        if not target.stream_body:
            if self._busy is None and not self._queue:
                self.send_continue()
            else:
                self._queue.append((CONTINUE, None, KEEP_ALIVE, False, 0))

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
            self._context or self._new_context(),
        )
        self._execute_or_queue((target, request, self._mode, self._head, self._begin_ns))

    def _stream_ended(self, request: StreamingRequest, mode: int) -> tuple[int, bool]:
        """A stream_body handler returned (or raised): the mode its answer goes out with, and
        whether the body failed.

        The body failed (413, 408, 400, the client left): the handler's answer is
        dropped, the server's error answer (queued by ``_fail``) stands. The body
        not all received: the answer closes the connection (``Connection: close``),
        and what the client still sends is read and dropped for ``LINGER_SECONDS``
        (lingering close), so keep-alive framing never depends on an unread body.
        """
        stream = request.stream()
        self._continue_pending = False
        failed = stream.error is not None
        if not failed and not stream.complete:
            if self._body is stream:
                self._body = None
            stream.fail(ClientDisconnected("the handler returned before reading the whole body"))
            self._state = CLOSING
            self._linger = True
            mode = CLOSE
        self._resume_body()
        return mode, failed

    def pause_body(self) -> None:
        """A stream_body's buffer is over its bound: stop reading until its handler takes some."""
        self._pause(PAUSED_BODY)

    def body_consumed(self) -> None:
        """A stream_body handler took chunks: read again unless the body being read is still full."""
        if self._paused & PAUSED_BODY:
            self._resume_body()

    def _resume_body(self) -> None:
        body = self._body
        if body.__class__ is not BodyStream or body.buffered <= STREAM_BUFFER // 2:
            if self._paused & PAUSED_BODY:
                self._since = monotonic_ns()  # the body's silence is timed from here, not from the pause
            self._resume(PAUSED_BODY)

    def send_continue(self) -> None:
        """Write ``100 Continue`` if one is owed (``Expect: 100-continue``): the body is wanted now."""
        if not self._continue_pending:
            return
        self._continue_pending = False
        if self._transport is None or self._state == CLOSING:
            return
        self._out.append(CONTINUE)
        self._out_size += len(CONTINUE)
        self._flush()


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """A request body follows these headers: Transfer-Encoding, or a Content-Length over 0."""
    for name, value in headers:
        size = len(name)
        if size == 17 and name.lower() == b"transfer-encoding":
            return True
        if size == 14 and name.lower() == b"content-length" and value.strip(b" \t") not in (b"0", b""):
            return True
    return False

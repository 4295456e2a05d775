"""``FailureHandling``: error answers, timeouts and the end of a connection.

What a connection does when something goes wrong or runs out: a request
refused for bad input or a limit (``_fail``: the status, then a lingering
close), an error llhttp found (``_parse_failed``), a handler's exception
(``_handler_failed``: a 500, or the ``HTTPError``'s status), a bug here
(``_internal_error``: that connection only), the timeouts checked once a
second (``check_timeouts``), and shutdown (``shutdown``).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import TYPE_CHECKING, Final

from httptools import HttpParserError, HttpParserInvalidMethodError

from cyclehttp.clock.stats import METHOD_NOT_IMPLEMENTED, PARSE_ERROR
from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.core import ConnectionCore
from cyclehttp.cycle.request_stream import BodyStream
from cyclehttp.cycle.response import error_response
from cyclehttp.cycle.states import BODY, CLOSING, HEAD, IDLE, PAUSED_BODY, PAUSED_QUEUE, PAUSED_WRITE
from cyclehttp.cycle.wire import CLOSE
from cyclehttp.errors import HTTPError

if TYPE_CHECKING:
    from cyclehttp.cycle.request import Request
    from cyclehttp.cycle.targets import HandlerTarget

__all__ = ["LINGER_SECONDS", "FailureHandling"]

error_log: Final = logging.getLogger("cyclehttp.error")

# After an error answer the server shuts its write side and reads (and drops)
# what the client still sends, for at most this long, before closing: closing
# with unread input makes the kernel send RST, which can destroy the answer
# in the client's buffers before it is read (nginx's lingering_close).
LINGER_SECONDS: Final = 2.0

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

_INTERNAL_ERROR: Final = error_response(500).freeze()


@mypyc_attr(allow_interpreted_subclasses=True)
class FailureHandling(ConnectionCore):
    """Error answers, timeouts and shutdown (see the module docstring)."""

    __slots__ = ()

    def _internal_error(self, exc: BaseException) -> None:
        self._stats.internal_errors += 1
        error_log.error("internal error while parsing a request; closing the connection", exc_info=exc)
        self.abort()

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
        self._pause(PAUSED_QUEUE)
        self._execute_or_queue((data, None, CLOSE, False, start), even_unread=True)

    def _stop_reading(self) -> None:
        self._state = CLOSING
        self._pause(PAUSED_QUEUE)
        self._drain_queue()

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
        if self._paused & PAUSED_WRITE and now - self._write_paused_ns > config.send_timeout * 1e9:
            # The client has not read for send_timeout: its slot is worth more than its answer.
            error_log.debug("client did not read for %g s; aborting the connection", config.send_timeout)
            self._stats.timeouts["send_timeout"] += 1
            self.abort()
            return
        if state == HEAD:
            if now - self._begin_ns > config.header_timeout * 1e9:
                self._fail(
                    408, f"request headers not received within {config.header_timeout:g} s", "header_timeout"
                )
                self._flush()
        elif state == BODY:
            if self._paused & PAUSED_BODY or self._continue_pending:
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

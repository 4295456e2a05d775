"""``FramingChecks``: what the parser callbacks check that llhttp does not, off the hot path.

llhttp is strict about framing but leaves some checks to the server; these run
only when a request needs them: a header over ``max_header_size`` or a field of
the trailer section (``_over_header_limit``; trailers are kept apart, RFC 9110
section 6.5.2), ``Transfer-Encoding`` beyond one ``chunked``, the fields a
static target decides with (``_add_condition``) and a request target that is
not a path (``_absolute_form``: absolute form, ``*``).
"""

from __future__ import annotations

from typing import Any, Final

from httptools import HttpParserError, parse_url

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.core import Refused
from cyclehttp.cycle.router import ASTERISK
from cyclehttp.cycle.sending import LongBodySending

__all__ = ["ACCEPT_ENCODING", "IF_NONE_MATCH", "IF_RANGE", "RANGE", "TRAILER_MARK", "FramingChecks"]

# The header bytes once the header section is complete: a field that comes after it (the
# trailer section of a chunked body) is then over any max_header_size, which sends it to the
# trailer's cold path without a test on every header; the trailer's own bytes count from here.
TRAILER_MARK: Final = 1 << 62

# Slots of HttpProtocol._conditions: the fields a static target's select() decides with.
IF_NONE_MATCH: Final = 0
ACCEPT_ENCODING: Final = 1
RANGE: Final = 2
IF_RANGE: Final = 3


@mypyc_attr(allow_interpreted_subclasses=True)
class FramingChecks(LongBodySending):
    """Header limits, trailers, Transfer-Encoding and request-target forms (see the module docstring)."""

    __slots__ = ()

    def _over_header_limit(self, name: bytes, value: bytes) -> None:
        """A header over ``max_header_size`` (431), or a field of the trailer section."""
        if self._head_bytes < TRAILER_MARK:
            raise Refused(431, f"request headers are larger than {self._max_header} bytes", "max_header_size")
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
            raise Refused(
                431, f"request trailers are larger than {self._max_header} bytes", "max_header_size"
            )
        if (size == 10 and name.lower() == b"connection") or (
            size == 16 and name.lower() == b"proxy-connection"
        ):
            raise Refused(400, f"{name.decode('latin-1')} is not allowed in a trailer section")
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
            raise Refused(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
        if value.strip(b" \t").lower() != b"chunked":
            raise Refused(501, "only Transfer-Encoding: chunked is supported")
        if sum(len(n) == 17 and n.lower() == b"transfer-encoding" for n, _ in self._headers) > 1:
            raise Refused(501, "only one Transfer-Encoding: chunked is supported")

    def _absolute_form(self, url: bytes) -> tuple[bytes, bytes]:
        """Path and query of an absolute-form target (``http://host/path``), or ``*``; 400 otherwise.

        ``*`` (the asterisk form, RFC 9112 section 3.2.4) is for ``OPTIONS`` only: it
        selects the router's server-wide answer, whose ``Allow`` lists every method served.
        """
        if url == ASTERISK:
            if self._parser.get_method() != b"OPTIONS":
                raise Refused(400, "the request target '*' is only allowed with OPTIONS")
            return ASTERISK, b""
        # Any: httptools gives None for the parts a URL lacks, where its stubs say bytes.
        parsed: Any
        try:
            parsed = parse_url(url)
        except HttpParserError:
            parsed = None
        if parsed is None or parsed.schema not in (b"http", b"https") or not parsed.host:
            raise Refused(400, "the request target must be a path starting with '/'")
        return parsed.path or b"/", parsed.query or b""

"""Responses and their wire form.

A ``Response`` validates its headers once, when it is built, and keeps them
as a ready byte block. The server then only has to add the per-request
lines: ``Date`` (from a clock refreshed once a second), ``Content-Length`` and
``Connection``.

A ``Response`` given as a route's target is rendered further, once, into a
``StaticResponse``: immutable buffers holding the whole message for every
connection mode, so serving it writes bytes that already exist. The buffers
are re-rendered when the ``Date`` clock ticks, never per request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final

__all__ = [
    "CLOSE",
    "DATE",
    "KEEP_ALIVE",
    "KEEP_ALIVE_HTTP10",
    "HeadersLike",
    "Response",
    "StaticResponse",
    "error_response",
    "render_result",
]

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]

# Connection modes: which Connection header a response carries.
KEEP_ALIVE: Final = 0  # HTTP/1.1 default, no header needed
CLOSE: Final = 1  # "Connection: close", then the server closes
KEEP_ALIVE_HTTP10: Final = 2  # HTTP/1.0 client that asked for keep-alive

CONNECTION_LINES: Final = (b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n")

STATUS_LINES: Final[dict[int, bytes]] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}

# Headers the server owns: letting a handler set them would break framing.
RESERVED_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "date", "connection"})

# RFC 9110 section 5.6.2: token = 1*tchar
_TCHAR: Final = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Bodies above this are written as a second buffer, so the once-a-second
# re-render of a static response copies only its head.
SPLIT_BODY_THRESHOLD: Final = 16 * 1024

TEXT_PLAIN: Final = "text/plain; charset=utf-8"
TEXT_HTML: Final = "text/html; charset=utf-8"
APPLICATION_JSON: Final = "application/json"
OCTET_STREAM: Final = "application/octet-stream"


def _http_date() -> bytes:
    return b"Date: " + formatdate(usegmt=True).encode("ascii") + b"\r\n"


class DateClock:
    """The ``Date`` header line, refreshed once a second by the running server.

    RFC 9110 requires ``Date`` on most responses; formatting it per request
    would cost more than the rest of a static response, so it is formatted
    once per second and shared.
    """

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line: bytes = _http_date()

    def refresh(self) -> bool:
        """Re-format the header; returns True when its text changed."""
        line = _http_date()
        if line == self.line:
            return False
        self.line = line
        return True


DATE: Final = DateClock()


_JSON_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

# JSONEncoder.encode builds a new C encoder for every call, which costs twice
# the encoding of a small dict; this one is built once, with the same settings.
# No circular-reference markers: a shared markers dict would keep stale ids after
# an error and is not safe across threads; a circular value still fails, with
# RecursionError instead of ValueError.
_C_ENCODER: Final = (
    c_make_encoder(None, _JSON_ENCODER.default, encode_basestring, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, the wire form of dict/list results."""
    if _C_ENCODER is None:
        return _JSON_ENCODER.encode(value).encode("utf-8")
    return "".join(_C_ENCODER(value, 0)).encode("utf-8")


def _has_no_body(status: int) -> bool:
    return status < 200 or status == 204 or status == 304


def _validate_header(name: str, value: str) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"header names and values must be str, got {name!r}: {value!r}")
    if not name or not all(c < 128 and c in _TCHAR for c in name.encode("utf-8", "replace")):
        raise ValueError(f"invalid header name {name!r}: use letters, digits and -")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"header {name!r} has CR, LF or NUL in its value {value!r}")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"header {name!r} value {value!r} is not latin-1; percent-encode it "
                "(e.g. urllib.parse.quote) or use RFC 8187 encoding"
            ) from None
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"header {name!r} is set by the server; do not set it in a Response")


def _header_items(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


class Response:
    """An HTTP response: status, headers and a body.

    Build one per request in a handler, or give one as a route's target to
    have it pre-rendered once and served without running any code.
    ``body`` may be ``bytes`` or ``str`` (encoded as UTF-8). Header names and
    values are validated here, so a CR/LF injection fails where it is written.
    """

    __slots__ = ("_header_block", "body", "content_type", "headers", "status")

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = None,
    ) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
            if content_type is None:
                content_type = TEXT_PLAIN
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif not isinstance(body, bytes):
            raise TypeError(
                f"Response body must be bytes or str, got {type(body).__name__}; use Response.json() for data"
            )
        if status not in STATUS_LINES:
            raise ValueError(f"unknown HTTP status {status!r}; use a registered status code")
        if _has_no_body(status) and body:
            raise ValueError(f"a {status} response cannot have a body")
        items = _header_items(headers)
        # A Content-Type among the headers wins over the default or the argument:
        # one header, never two.
        header_type = next((value for name, value in items if name.lower() == "content-type"), None)
        if header_type is not None:
            content_type = header_type
        elif content_type is not None:
            items.insert(0, ("Content-Type", content_type))
        for name, value in items:
            _validate_header(name, value)
        self.status = status
        self.body: bytes = body
        self.content_type = content_type
        self.headers: tuple[tuple[str, str], ...] = tuple(items)
        self._header_block = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in items)

    @classmethod
    def text(cls, text: str, status: int = 200, headers: HeadersLike | None = None) -> Response:
        """A ``text/plain; charset=utf-8`` response."""
        return cls(text.encode("utf-8"), status, headers, TEXT_PLAIN)

    @classmethod
    def html(cls, html: str, status: int = 200, headers: HeadersLike | None = None) -> Response:
        """A ``text/html; charset=utf-8`` response."""
        return cls(html.encode("utf-8"), status, headers, TEXT_HTML)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: HeadersLike | None = None) -> Response:
        """An ``application/json`` response with compact UTF-8 JSON."""
        return cls(json_bytes(value), status, headers, APPLICATION_JSON)

    def render(self, mode: int, head: bool) -> bytes:
        """The whole message for one request (``head``: without the body)."""
        return render(self.status, self._header_block, self.body, mode, head)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def render(status: int, header_block: bytes, body: bytes, mode: int, head: bool) -> bytes:
    if status < 200 or status == 204 or status == 304:  # _has_no_body, inlined: once per handler answer
        return b"".join((STATUS_LINES[status], DATE.line, header_block, CONNECTION_LINES[mode], b"\r\n"))
    return b"".join(
        (
            STATUS_LINES[status],
            DATE.line,
            header_block,
            b"Content-Length: %d\r\n" % len(body),
            CONNECTION_LINES[mode],
            b"\r\n",
            b"" if head else body,
        )
    )


_JSON_BLOCK: Final = b"Content-Type: application/json\r\n"
_TEXT_BLOCK: Final = b"Content-Type: text/plain; charset=utf-8\r\n"
_BYTES_BLOCK: Final = b"Content-Type: application/octet-stream\r\n"


def render_result(result: object, mode: int, head: bool) -> bytes:
    """Turn what a handler returned into wire bytes.

    ``Response`` as is; ``dict``/``list`` as JSON; ``str`` as text/plain;
    ``bytes`` as application/octet-stream. Anything else is a TypeError that
    names the accepted types (the caller answers 500).
    """
    kind = result.__class__  # the exact types first: no isinstance chain for the common results
    if kind is dict or kind is list:
        return render(200, _JSON_BLOCK, json_bytes(result), mode, head)
    if kind is bytes:
        return render(200, _BYTES_BLOCK, result, mode, head)  # type: ignore[arg-type]  # it is bytes
    if isinstance(result, Response):
        return render(result.status, result._header_block, result.body, mode, head)
    if isinstance(result, (dict, list)):
        return render(200, _JSON_BLOCK, json_bytes(result), mode, head)
    if isinstance(result, str):
        return render(200, _TEXT_BLOCK, result.encode("utf-8"), mode, head)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return render(200, _BYTES_BLOCK, bytes(result), mode, head)
    raise TypeError(f"handler returned {type(result).__name__}; return a Response, bytes, str, dict or list")


def error_response(status: int, detail: str | None = None, headers: HeadersLike | None = None) -> Response:
    """The plain-text response for an error status (the phrase when no detail)."""
    body = detail if detail is not None else HTTPStatus(status).phrase
    return Response(body.encode("utf-8"), status, headers, TEXT_PLAIN)


class StaticResponse:
    """A ``Response`` rendered once into immutable buffers, one per mode.

    ``buffers[mode]`` is the whole message for a GET, ``head_buffers[mode]``
    the same head without the body. When the body is larger than
    ``SPLIT_BODY_THRESHOLD`` the buffers hold only the head and ``body`` is
    written after it (``split`` is True), so the per-second re-render stays
    cheap.
    """

    __slots__ = ("body", "buffers", "head_buffers", "hits", "response", "split")

    def __init__(self, response: Response) -> None:
        self.response = response
        self.hits = 0
        """Times served (its status is fixed, so this is all the metrics need)."""
        self.split = len(response.body) > SPLIT_BODY_THRESHOLD
        self.body = response.body
        self.buffers: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self.head_buffers: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self.refresh()

    def refresh(self) -> None:
        """Re-render every buffer with the current ``Date``."""
        response = self.response
        self.head_buffers = (
            response.render(KEEP_ALIVE, True),
            response.render(CLOSE, True),
            response.render(KEEP_ALIVE_HTTP10, True),
        )
        if self.split:
            self.buffers = self.head_buffers
        else:
            self.buffers = (
                response.render(KEEP_ALIVE, False),
                response.render(CLOSE, False),
                response.render(KEEP_ALIVE_HTTP10, False),
            )

    @property
    def status(self) -> int:
        return self.response.status

    def copy(self) -> StaticResponse:
        """The same response with its own buffers and counter (one per compiled router)."""
        return StaticResponse(self.response)

    def __repr__(self) -> str:
        return f"<StaticResponse {self.status} {len(self.body)} bytes>"

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

import gzip
import hashlib
import importlib
import json
import re
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from cyclehttp.cycle.cookies import SameSite, set_cookie_header
from cyclehttp.cycle.ranges import UNSATISFIABLE, http_date_seconds, if_range_matches, parse_range

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterable
    from datetime import datetime

    from cyclehttp.cycle.files import FileResponse
    from cyclehttp.cycle.streams import StreamingResponse

__all__ = [
    "CLOSE",
    "DATE",
    "KEEP_ALIVE",
    "KEEP_ALIVE_HTTP10",
    "HeadersLike",
    "Response",
    "StaticResponse",
    "error_response",
    "etag_matches",
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
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
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


def load_orjson() -> Any:
    """The ``orjson`` module if it is installed, else None (request bodies and results share it)."""
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


_orjson: Any = load_orjson()
"""The optional ``orjson`` module (``pip install 'cyclehttp[json]'``), or None: the stdlib encoder."""


def _orjson_refuse(value: Any) -> Any:
    raise TypeError(f"orjson leaves {type(value).__name__} to the stdlib encoder")


# Subclasses (IntEnum, str subclasses ...), datetimes and dataclasses go to ``default``, which
# refuses them: the stdlib encoder then decides, so both paths accept the same types.
_ORJSON_OPTIONS: Final = (
    0
    if _orjson is None
    else _orjson.OPT_PASSTHROUGH_SUBCLASS
    | _orjson.OPT_PASSTHROUGH_DATETIME
    | _orjson.OPT_PASSTHROUGH_DATACLASS
)

# Where orjson's bytes may differ from the stdlib's, the stdlib encodes again:
# floats in exponent form (orjson "1e16", "1e-7"; stdlib "1e+16", "1e-07"), small floats
# (orjson "0.00001", stdlib "1e-05"), long digit runs (floats of 1e16 and more) and null
# (orjson writes NaN and Infinity as null, the stdlib as NaN and Infinity). Substring tests
# on a copy with every digit mapped to "0": a regex over the output cost more than orjson
# saved on outputs over ~128 bytes; on shorter ones the regex is the cheaper test.
# A match inside a string, or a None in the value, only costs speed.
_MAY_DIFFER_RE: Final = re.compile(rb"null|0\.0000|[0-9](?:e|[0-9]{15})")
_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_DIGITS: Final = b"0" * 16


def _orjson_may_differ(data: bytes) -> bool:
    if len(data) < 128:
        return _MAY_DIFFER_RE.search(data) is not None
    if b"null" in data or b"0.0000" in data:
        return True
    digits = data.translate(_DIGITS_TO_ZERO)
    return b"0e" in digits or _SIXTEEN_DIGITS in digits


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, the wire form of dict/list results.

    With orjson installed it encodes first; values it refuses (non-str keys,
    ints beyond 64 bits, lone surrogates, subclasses) and output that could
    differ (see ``_orjson_may_differ``) go to the stdlib encoder, so the bytes
    are the same either way.
    """
    if _orjson is not None:
        try:
            data: bytes = _orjson.dumps(value, _orjson_refuse, _ORJSON_OPTIONS)
        except TypeError:
            pass
        else:
            if not _orjson_may_differ(data):
                return data
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

    __slots__ = ("_frozen", "_header_block", "body", "content_type", "headers", "status")

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
        self._frozen = False

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

    @staticmethod
    def stream(
        content: AsyncIterable[bytes | str] | Iterable[bytes | str],
        status: int = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = OCTET_STREAM,
    ) -> StreamingResponse:
        """A body sent while ``content`` produces it (an async or sync iterator of bytes/str).

        Chunked on HTTP/1.1, close-delimited on HTTP/1.0; each send waits while
        the client is not reading. See ``cyclehttp.streaming.StreamingResponse``.
        """
        from cyclehttp.cycle.streams import StreamingResponse

        return StreamingResponse(content, status, headers, content_type)

    @staticmethod
    def file(
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        headers: HeadersLike | None = None,
        filename: str | None = None,
    ) -> FileResponse:
        """The file at ``path``, with ETag/Last-Modified, 304s and byte ranges.

        Stats the file now: a missing one raises ``FileNotFoundError`` here, in the
        handler, which decides what that means (e.g. ``raise HTTPError(404)``).
        ``filename`` adds ``Content-Disposition: attachment``. See ``cyclehttp.files``.
        """
        from cyclehttp.cycle.files import FileResponse

        return FileResponse(path, content_type=content_type, headers=headers, filename=filename)

    @classmethod
    def redirect(cls, url: str, status: int = 307, headers: HeadersLike | None = None) -> Response:
        """A redirect to ``url`` (absolute or relative) with an empty body.

        ``status`` is 301, 302, 303, 307 (the default: the method and body are
        kept) or 308. ``url`` must be latin-1 without CR, LF or NUL:
        percent-encode anything else (``urllib.parse.quote(url, safe=":/?#[]@!$&'()*+,;=%")``).
        """
        if status not in REDIRECT_STATUSES:
            raise ValueError(f"redirect status must be 301, 302, 303, 307 or 308, got {status!r}")
        if not isinstance(url, str) or not url:
            raise ValueError(f"redirect url must be a non-empty str, got {url!r}")
        return cls(b"", status, [("Location", url), *_header_items(headers)])

    def with_headers(self, headers: HeadersLike) -> Response:
        """A copy with ``headers`` added after this one's (e.g. in an ``after_request`` hook)."""
        return Response(self.body, self.status, [*self.headers, *_header_items(headers)])

    def freeze(self) -> Response:
        """Refuse every later change to this response (``set_cookie``, ``delete_cookie``); returns it.

        A response served to many requests must not change under them: a route's
        ``Response`` target is frozen when it is declared (it is pre-rendered then,
        so a later change would silently not be sent). Freeze a module-level
        response that handlers return as it is, so that an ``after_request`` hook
        cannot add one client's cookie to everyone's answer.
        """
        self._frozen = True
        return self

    @property
    def frozen(self) -> bool:
        """True once ``freeze()`` was called (e.g. the response is a static route's target)."""
        return self._frozen

    def _add_header(self, name: str, value: str, method: str) -> None:
        if self._frozen:
            raise RuntimeError(
                f"response.{method}() cannot change this Response: it is shared by many requests "
                "(a route's pre-rendered target, or frozen with freeze()). Use "
                f"response.{'with_cookie' if method == 'set_cookie' else 'without_cookie'}(...) for a "
                "changed copy, or build the Response in a handler"
            )
        _validate_header(name, value)
        self.headers = (*self.headers, (name, value))
        self._header_block += f"{name}: {value}\r\n".encode("latin-1")

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        expires: datetime | int | float | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: SameSite | None = "lax",
        partitioned: bool = False,
    ) -> Response:
        """Add a ``Set-Cookie`` header to this response, and return it.

        Both habits work: ``response.set_cookie("sid", token); return response``
        (Flask, Starlette) and ``return Response.text("hi").set_cookie("sid", token)``.
        Call it again for more cookies (one ``Set-Cookie`` each). The name and
        value are validated here (``ValueError``): see ``cookies.set_cookie_header``.
        A frozen response (a route's pre-rendered target) raises ``RuntimeError``:
        ``with_cookie`` gives a changed copy instead.
        """
        header = set_cookie_header(
            name,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )
        self._add_header("Set-Cookie", header, "set_cookie")
        return self

    def delete_cookie(
        self, name: str, *, path: str | None = "/", domain: str | None = None, secure: bool = False
    ) -> Response:
        """Tell the client to drop cookie ``name`` (Max-Age=0, Expires in 1970); returns this response.

        ``path`` and ``domain`` must be those the cookie was set with. A frozen
        response raises ``RuntimeError``: ``without_cookie`` gives a changed copy.
        """
        self._add_header("Set-Cookie", _deletion_header(name, path, domain, secure), "delete_cookie")
        return self

    def with_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        expires: datetime | int | float | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: SameSite | None = "lax",
        partitioned: bool = False,
    ) -> Response:
        """A copy of this response with a ``Set-Cookie`` header added; this one is not changed.

        For a shared (frozen) response: ``return LOGIN_PAGE.with_cookie("sid", token)``.
        """
        header = set_cookie_header(
            name,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )
        return self.with_headers([("Set-Cookie", header)])

    def without_cookie(
        self, name: str, *, path: str | None = "/", domain: str | None = None, secure: bool = False
    ) -> Response:
        """A copy of this response that tells the client to drop cookie ``name``; this one is not changed."""
        return self.with_headers([("Set-Cookie", _deletion_header(name, path, domain, secure))])

    def render(self, mode: int, head: bool) -> bytes:
        """The whole message for one request (``head``: without the body)."""
        return render(self.status, self._header_block, self.body, mode, head)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def _deletion_header(name: str, path: str | None, domain: str | None, secure: bool) -> str:
    """The ``Set-Cookie`` value that removes cookie ``name`` (the path and domain it was set with)."""
    header = set_cookie_header(name, "", path=path, domain=domain, secure=secure, samesite=None, max_age=0)
    return header + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


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


# -- static responses: ETag, 304 and compressed variants -----------------------
#
# A static 2xx response is also served as a 304 (RFC 9110 section 13.1.2) and,
# when its body is large enough and of a compressible type, as a gzip (and br)
# encoded variant. Every one of them is a StaticResponse of its own, rendered
# once and re-rendered with the Date clock, so choosing one per request is a
# couple of dict lookups, never formatting.

# Bodies shorter than this are not compressed: below ~1 KiB a response fits one
# packet either way, and the gzip header and trailer (18 bytes) eat the saving
# (Akamai's threshold is 860 bytes, Cloudflare's and Fastly's about 1 KiB).
COMPRESS_MIN_SIZE: Final = 1024

# Media types worth compressing, beside text/* and the +json / +xml suffixes.
COMPRESSIBLE_TYPES: Final = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/xml",
        "application/x-ndjson",
        "application/wasm",
        "image/svg+xml",
        "image/x-icon",
        "image/bmp",
    }
)

# Header fields a 304 repeats from the 200 it stands for (RFC 9110 section 15.4.5);
# Date comes from the clock like on every answer.
_NOT_MODIFIED_FIELDS: Final = frozenset({"cache-control", "content-location", "etag", "expires", "vary"})

# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE,
# etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG: Final = rb'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_ENTITY_TAG_RE: Final = re.compile(_ENTITY_TAG)
# RFC 9110 section 13.1.2: If-None-Match = "*" / #entity-tag, where a list may hold
# empty elements (section 5.6.1.2); the value is stripped of OWS before matching.
_ENTITY_TAG_LIST_RE: Final = re.compile(
    rb"(?:,[ \t]*)*" + _ENTITY_TAG + rb"(?:[ \t]*,(?:[ \t]*" + _ENTITY_TAG + rb")?)*"
)
_OPAQUE_TAG_RE: Final = re.compile(rb'"[^"]*"')

# RFC 9110 section 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE_RE: Final = re.compile(rb"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

# Parsed Accept-Encoding values: clients send the same few strings all day. Bounded:
# a client sending a new value every time only makes the cache start over.
_ACCEPT_CACHE: Final[dict[bytes, dict[str, float]]] = {}
_ACCEPT_CACHE_SIZE: Final = 256


def _load_brotli() -> Any:
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


_brotli: Any = _load_brotli()
"""The optional ``brotli`` module (``pip install 'cyclehttp[brotli]'``), or None: no br variants."""


def is_compressible(content_type: str | None) -> bool:
    """True for media types that compress well (text, JSON, JavaScript, XML, SVG ...)."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media.startswith("text/") or media in COMPRESSIBLE_TYPES or media.endswith(("+json", "+xml"))


def etag_matches(field: bytes, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` value matches ``etag`` (RFC 9110 section 13.1.2).

    The weak comparison: ``W/`` prefixes are ignored on both sides; ``*``
    matches. A malformed value matches nothing, so the client gets the full
    response rather than an error.
    """
    field = field.strip(b" \t")
    if field == etag or field == b"*":  # the common case: the client sends back the tag it got
        return True
    if _ENTITY_TAG_LIST_RE.fullmatch(field) is None:
        return False
    opaque = etag[2:] if etag.startswith(b"W/") else etag
    return opaque in _OPAQUE_TAG_RE.findall(field)


def accept_encoding_weights(field: bytes) -> dict[str, float]:
    """Content coding (lower case) -> qvalue of an ``Accept-Encoding`` value (RFC 9110 section 12.5.3).

    ``x-gzip`` counts as ``gzip``; a coding listed twice keeps its first weight;
    an unreadable qvalue counts as 0 (not acceptable). The result is cached.
    """
    weights = _ACCEPT_CACHE.get(field)
    if weights is not None:
        return weights
    weights = {}
    for element in field.split(b","):
        coding, _, parameters = element.partition(b";")
        name = coding.strip(b" \t").lower().decode("latin-1")
        if not name:
            continue
        q = 1.0
        if parameters:
            for parameter in parameters.split(b";"):
                key, _, value = parameter.partition(b"=")
                if key.strip(b" \t").lower() == b"q":
                    value = value.strip(b" \t")
                    q = float(value) if _QVALUE_RE.fullmatch(value) else 0.0
        weights.setdefault("gzip" if name == "x-gzip" else name, q)
    if len(_ACCEPT_CACHE) >= _ACCEPT_CACHE_SIZE:
        _ACCEPT_CACHE.clear()
    _ACCEPT_CACHE[field] = weights
    return weights


class _Representation(NamedTuple):
    """One form of a static response, planned once: the message to render and its 304."""

    coding: str  # "identity", "gzip" or "br"
    message: Response
    etag: str | None  # None: not a 2xx, no conditional requests
    not_modified: Response | None


def _compress(body: bytes) -> list[tuple[str, bytes]]:
    """The encodings of ``body`` that are smaller than it, preferred first (br, then gzip)."""
    encoded: list[tuple[str, bytes]] = []
    if _brotli is not None:
        encoded.append(("br", _brotli.compress(body, quality=11)))
    # Highest level: this runs once per route at start-up. mtime=0: the same bytes every run.
    encoded.append(("gzip", gzip.compress(body, compresslevel=9, mtime=0)))
    return [(coding, data) for coding, data in encoded if len(data) < len(body)]


def plan_representations(response: Response) -> tuple[_Representation, ...]:
    """The identity form of ``response`` first, then its encoded forms (br, gzip), each with its 304.

    A 2xx gets a strong ETag (the first 64 bits of a BLAKE2b digest of its
    headers and body, so it changes when either does) unless it carries one:
    then that one is used, and a value that is not an entity-tag turns the
    conditional answers off. Other statuses (404, 405, a redirect) are served
    as they are: preconditions do not apply to them (RFC 9110 section 13.2.1),
    and like nginx the server sends no ETag with an error.
    """
    status = response.status
    if not 200 <= status < 300:
        return (_Representation("identity", response, None, None),)
    items = list(response.headers)
    user_etags = [value for name, value in items if name.lower() == "etag"]
    if user_etags:
        etag = user_etags[0]
        if len(user_etags) > 1 or _ENTITY_TAG_RE.fullmatch(etag.encode("latin-1")) is None:
            return (_Representation("identity", response, None, None),)
        items = [(name, value) for name, value in items if name.lower() != "etag"]
    else:
        digest = hashlib.blake2b(response._header_block + b"\r\n" + response.body, digest_size=8)
        etag = f'"{digest.hexdigest()}"'
    body = response.body
    names = [name.lower() for name, _ in items]
    encoded = (
        _compress(body)
        if len(body) >= COMPRESS_MIN_SIZE
        and "content-encoding" not in names
        and is_compressible(response.content_type)
        else []
    )
    if encoded:
        # Caches must key these answers on Accept-Encoding (RFC 9110 section 12.5.5).
        if "vary" in names:
            index = names.index("vary")
            name, value = items[index]
            tokens = {token.strip().lower() for token in value.split(",")}
            if "*" not in tokens and "accept-encoding" not in tokens:
                items[index] = (name, f"{value}, Accept-Encoding")
        else:
            items.append(("Vary", "Accept-Encoding"))
    forms = [("identity", body, [*items, ("ETag", etag)], etag)]
    for coding, data in encoded:
        tag = f'{etag[:-1]}-{coding}"'  # inside the quotes: W/"x" -> W/"x-gzip"
        forms.append((coding, data, [*items, ("Content-Encoding", coding), ("ETag", tag)], tag))
    return tuple(
        _Representation(
            coding,
            Response(data, status, headers),
            tag,
            Response(b"", 304, [(n, v) for n, v in headers if n.lower() in _NOT_MODIFIED_FIELDS]),
        )
        for coding, data, headers, tag in forms
    )


class StaticResponse:
    """A ``Response`` rendered once into immutable buffers, one per mode.

    ``buffers[mode]`` is the whole message for a GET, ``head_buffers[mode]``
    the same head without the body. When the body is larger than
    ``SPLIT_BODY_THRESHOLD`` the buffers hold only the head and ``body`` is
    written after it (``split`` is True), so the per-second re-render stays
    cheap.

    A 2xx also has an ``etag`` (in its headers), a ``not_modified`` 304 to
    answer a matching ``If-None-Match`` with, and possibly ``encoded``
    variants (br, gzip: each a StaticResponse with its own ETag and 304).
    ``select`` picks the answer for a request's fields; the server calls it
    only when the request has one of them.

    A 200 whose headers say ``Accept-Ranges: bytes`` (``app.static()`` files
    do) also answers a ``Range`` GET: ``ranges`` is True. The 206 (or 416) is
    rendered for that request from the same body, so a request without
    ``Range`` pays nothing for it.
    """

    __slots__ = (
        "_modified",
        "_plan",
        "_range_counts",
        "body",
        "buffers",
        "coding",
        "encoded",
        "etag",
        "head_buffers",
        "hits",
        "message",
        "not_modified",
        "ranges",
        "response",
        "split",
    )

    def __init__(self, response: Response, plan: tuple[_Representation, ...] | None = None) -> None:
        self.response = response.freeze()  # rendered now: a later change would never be sent
        self.hits = 0
        """Times these buffers were served (their status is fixed); ``count`` adds the variants'."""
        if plan is None:
            plan = plan_representations(response)
        self._plan = plan
        first = plan[0]
        self.message = first.message
        """What is rendered: ``response`` with its ETag, Vary and Content-Encoding."""
        self.coding = first.coding
        self.etag = None if first.etag is None else first.etag.encode("latin-1")
        self.body = first.message.body
        self.split = len(self.body) > SPLIT_BODY_THRESHOLD
        self.not_modified = (
            None
            if first.not_modified is None
            else StaticResponse(
                first.not_modified, (_Representation(first.coding, first.not_modified, None, None),)
            )
        )
        self.encoded = tuple(StaticResponse(form.message, (form,)) for form in plan[1:])
        headers = {name.lower(): value for name, value in self.message.headers}
        self.ranges = (
            self.message.status == 200 and headers.get("accept-ranges", "").strip().lower() == "bytes"
        )
        """Answer ``Range`` requests (206/416): a 200 with ``Accept-Ranges: bytes``."""
        modified = headers.get("last-modified")
        self._modified = None if modified is None else http_date_seconds(modified)
        self._range_counts = [0] * 6  # the 206/416 answers rendered per request, by status digit
        self.buffers: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self.head_buffers: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self.refresh()

    def refresh(self) -> None:
        """Re-render every buffer, the variants' and the 304s' too, with the current ``Date``."""
        message = self.message
        self.head_buffers = (
            message.render(KEEP_ALIVE, True),
            message.render(CLOSE, True),
            message.render(KEEP_ALIVE_HTTP10, True),
        )
        if self.split or not self.body:
            self.buffers = self.head_buffers
        else:
            self.buffers = (
                message.render(KEEP_ALIVE, False),
                message.render(CLOSE, False),
                message.render(KEEP_ALIVE_HTTP10, False),
            )
        if self.not_modified is not None:
            self.not_modified.refresh()
        for variant in self.encoded:
            variant.refresh()

    def select(
        self,
        if_none_match: bytes | None,
        accept_encoding: bytes | None,
        range_field: bytes | None = None,
        if_range: bytes | None = None,
    ) -> StaticResponse:
        """The answer to a GET or HEAD with these fields: this, an encoded variant, a 304, a 206 or a 416.

        The encoding is chosen first (highest qvalue; br before gzip on a tie;
        identity only when listed with a higher qvalue than any variant), then
        ``If-None-Match`` is compared with the chosen variant's ETag (RFC 9110
        section 13.2.2 order), then ``Range`` (give it for a GET only) and
        ``If-Range`` pick a part of the chosen variant, when it takes ranges.
        """
        chosen = self
        if accept_encoding is not None and self.encoded:
            weights = accept_encoding_weights(accept_encoding)
            star = weights.get("*", 0.0)
            best = 0.0
            for variant in self.encoded:
                q = weights.get(variant.coding, star)
                if q > best:
                    chosen, best = variant, q
            if best and weights.get("identity", 0.0) > best:
                chosen = self
        not_modified = chosen.not_modified
        if (
            if_none_match is not None
            and not_modified is not None
            and chosen.etag is not None
            and etag_matches(if_none_match, chosen.etag)
        ):
            return not_modified
        if range_field is not None and chosen.ranges:
            return chosen._part(range_field, if_range)
        return chosen

    def _part(self, range_field: bytes, if_range: bytes | None) -> StaticResponse:
        """The 206 or 416 a ``Range`` asks of this 200, rendered now; this one when it is ignored."""
        etag = None if self.etag is None else self.etag.decode("latin-1")
        if if_range is not None and not if_range_matches(if_range.decode("latin-1"), etag, self._modified):
            return self
        size = len(self.body)
        wanted = parse_range(range_field.decode("latin-1"), size)
        if wanted is None:
            return self
        if wanted is UNSATISFIABLE:
            part = Response(
                b"Range Not Satisfiable: the body has %d bytes" % size,
                416,
                [("Content-Range", f"bytes */{size}")],
                TEXT_PLAIN,
            )
        else:
            first, last = wanted
            part = Response(
                self.body[first : last + 1],
                206,
                [*self.message.headers, ("Content-Range", f"bytes {first}-{last}/{size}")],
            )
        self._range_counts[part.status // 100] += 1
        return StaticResponse(part, (_Representation(self.coding, part, None, None),))

    def count(self, counts: list[int]) -> None:
        """Add the answers served from this response, its variants and their 304s, by status class."""
        counts[self.message.status // 100] += self.hits
        for digit, count in enumerate(self._range_counts):
            counts[digit] += count
        if self.not_modified is not None:
            self.not_modified.count(counts)
        for variant in self.encoded:
            variant.count(counts)

    def reset_counts(self) -> None:
        """Zero the counters of this response, its variants and their 304s."""
        self.hits = 0
        self._range_counts[:] = [0] * 6
        if self.not_modified is not None:
            self.not_modified.reset_counts()
        for variant in self.encoded:
            variant.reset_counts()

    @property
    def status(self) -> int:
        return self.message.status

    def copy(self) -> StaticResponse:
        """The same response with its own buffers and counters (one per compiled router).

        The plan is shared: nothing is hashed or compressed again.
        """
        return StaticResponse(self.response, self._plan)

    def __repr__(self) -> str:
        coding = "" if self.coding == "identity" else f" {self.coding}"
        return f"<StaticResponse {self.status} {len(self.body)} bytes{coding}>"

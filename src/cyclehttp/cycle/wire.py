"""The wire form of an answer: status lines, the Date clock, header blocks, JSON bytes, ``render``.

Everything a response of any kind (``Response``, a pre-rendered one, a stream,
a file) is written with, and nothing that decides what to answer. Header names
and values are validated once, when a response is built, into a ready byte
block; per request the server only adds ``Date`` (formatted once a second),
``Content-Length`` and ``Connection``.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final

__all__ = [
    "APPLICATION_JSON",
    "BYTES_BLOCK",
    "CLOSE",
    "CONNECTION_LINES",
    "DATE",
    "JSON_BLOCK",
    "KEEP_ALIVE",
    "KEEP_ALIVE_HTTP10",
    "OCTET_STREAM",
    "STATUS_LINES",
    "TEXT_BLOCK",
    "TEXT_HTML",
    "TEXT_PLAIN",
    "DateClock",
    "HeadersLike",
    "body_size",
    "has_no_body",
    "header_items",
    "json_bytes",
    "load_orjson",
    "render",
    "validate_header",
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


def has_no_body(status: int) -> bool:
    return status < 200 or status == 204 or status == 304


def validate_header(name: str, value: str) -> None:
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


def header_items(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def render(status: int, header_block: bytes, body: bytes, mode: int, head: bool) -> bytes:
    if status < 200 or status == 204 or status == 304:  # has_no_body, inlined: once per handler answer
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


JSON_BLOCK: Final = b"Content-Type: application/json\r\n"
TEXT_BLOCK: Final = b"Content-Type: text/plain; charset=utf-8\r\n"
BYTES_BLOCK: Final = b"Content-Type: application/octet-stream\r\n"


def body_size(message: bytes) -> int:
    """Body bytes of a rendered answer (what the access log's size field counts)."""
    return len(message) - message.index(b"\r\n\r\n") - 4

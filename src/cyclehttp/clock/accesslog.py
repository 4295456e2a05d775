"""The access log: one line per response, in the combined log format plus its time.

Opt-in (``--access-log``): when it is off the protocol never builds a line,
never reads a clock for it, never calls ``logging``. Lines go to the
``cyclehttp.access`` logger at INFO level::

    127.0.0.1 - - [24/Nov/2026:20:14:03 +0000] "GET /users/1 HTTP/1.1" 200 10 "-" "curl/8.5.0" 0.000042

The fields are Apache's combined format (client, identity, user, time,
request line, status, body bytes or ``-``, Referer, User-Agent) followed by
the response time in seconds: from the read that brought the request's first
byte to the response being produced (``-`` for a 503 refused at accept).
Quotes, backslashes, control characters and bytes above 0x7E in the
request line and headers are escaped as ``\\"``, ``\\\\`` and ``\\xHH`` (as nginx
does), so a client cannot forge a line. An answer to malformed input is
logged with ``-`` as its request line.
"""

from __future__ import annotations

import logging
import time
from typing import Final, Protocol

__all__ = ["ACCESS_LOGGER", "AccessLog", "LoggedRequest", "escape", "format_time"]

ACCESS_LOGGER: Final = "cyclehttp.access"

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_ESCAPES: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0x100))}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def escape(text: str) -> str:
    """Make ``text`` safe inside a quoted log field (no quote, backslash or control character)."""
    return text.translate(_ESCAPES)


def format_time(seconds: float) -> str:
    """``[10/Oct/2000:13:55:36 +0200]``: local time with its UTC offset, as Apache writes it."""
    t = time.localtime(seconds)
    offset = t.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return (
        f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:"
        f"{t.tm_sec:02d} {sign}{hours:02d}{minutes:02d}]"
    )


class LoggedRequest(Protocol):
    """What a log line shows of a request: a ``cyclehttp.Request`` is one."""

    method: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    raw_headers: list[tuple[bytes, bytes]]

    def log_client(self, peer: str) -> str:
        """The client field: ``peer``, or the client a trusted proxy named."""
        ...


class AccessLog:
    """Writes access-log lines; the time field is formatted once per second, not per line."""

    __slots__ = ("_logger", "_second", "_time")

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(ACCESS_LOGGER)
        self._second = -1
        self._time = ""

    def log(self, client: str, request: LoggedRequest | None, status: int, size: int, start_ns: int) -> None:
        """Log one response; ``start_ns`` is the request's first-byte clock (0: no request read)."""
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        elapsed = (time.monotonic_ns() - start_ns) / 1e9 if start_ns else None
        logger.info("%s", self.line(client, request, status, size, elapsed))

    def line(
        self, client: str, request: LoggedRequest | None, status: int, size: int, elapsed: float | None
    ) -> str:
        """The log line for one response (without logging it)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._time = format_time(now)
        if request is None:
            request_line = referer = agent = "-"
        else:
            client = request.log_client(client)  # behind a trusted proxy: the client it names
            target = request.raw_path.decode("latin-1")
            query = request.query_string
            if query:
                target += "?" + query.decode("latin-1")
            request_line = escape(f"{request.method} {target} HTTP/{request.http_version}")
            referer = agent = "-"
            for name, value in request.raw_headers:
                if len(name) == 7 and name.lower() == b"referer":
                    referer = escape(value.decode("latin-1"))
                elif len(name) == 10 and name.lower() == b"user-agent":
                    agent = escape(value.decode("latin-1"))
        return (
            f'{client} - - {self._time} "{request_line}" {status} {size if size else "-"} '
            f'"{referer}" "{agent}" ' + ("-" if elapsed is None else f"{elapsed:.6f}")
        )

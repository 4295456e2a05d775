"""A byte-level HTTP/1.1 client for tests.

Ordinary clients normalise what they send and forgive what they receive, hiding the very
bugs a server's tests look for. ``RawConnection`` sends exactly the bytes it is given and
parses the answer strictly, so a server that frames a response wrongly fails with a clear
message. Every wait has a deadline, so a hung server fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as _json
import re
from dataclasses import dataclass
from typing import Any, Self

__all__ = [
    "MAX_HEAD",
    "ConnectionClosed",
    "MalformedResponse",
    "RawConnection",
    "RawResponse",
    "request",
]

MAX_HEAD = 64 * 1024
"""Largest response head (status line through CRLFCRLF) or trailer section accepted."""

_READ_SIZE = 65536
_PREVIEW = 200
_MAX_LINE = 4096
_NO_BODY_STATUSES = frozenset({204, 304})
_STATUS_RE = re.compile(rb"HTTP/1\.([0-9]) ([1-5][0-9]{2}) ([\t\x20-\x7e\x80-\xff]*)")
_FIELD_RE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)")
_CHUNK_RE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")

Fields = tuple[tuple[str, str], ...]
_Limit = tuple[float, float]  # (timeout for messages, loop-time deadline)


def _preview(data: bytes | bytearray) -> str:
    """Show the start of ``data`` for an error message, truncated so logs stay readable."""
    if len(data) <= _PREVIEW:
        return repr(bytes(data))
    return f"{bytes(data[:_PREVIEW])!r}... ({len(data)} bytes in total)"


class MalformedResponse(ValueError):
    """The server sent bytes that are not a valid HTTP/1.1 response.

    Raised instead of guessing, because a lenient parser would let a framing bug in
    the server under test go unnoticed. The connection should not be reused after it.
    """


class ConnectionClosed(ConnectionError):
    """The peer closed the connection before a complete response arrived.

    ``partial`` holds the bytes of the incomplete response received before the close,
    so a test can show (or assert on) how far the server got.
    """

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One parsed response, plus the exact bytes it arrived as.

    ``headers`` keep their order and the spelling the server used, so tests can check
    both; ``body`` is de-chunked; ``raw`` is the response exactly as it was on the wire.
    ``trailers`` holds the trailer fields of a chunked body (empty otherwise).
    """

    status: int
    reason: str
    http_version: str
    headers: Fields
    body: bytes
    raw: bytes
    trailers: Fields = ()

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), else ``default``."""
        return next(iter(self.header_all(name)), default)

    def header_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` (case-insensitive), in received order."""
        return _values(self.headers, name)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8; undecodable bytes become U+FFFD rather than raising."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises ``json.JSONDecodeError`` if it is not JSON)."""
        return _json.loads(self.body)


def _parse_status(line: bytes) -> tuple[str, int, str]:
    """Split a status line into (version, status, reason), or raise MalformedResponse."""
    m = _STATUS_RE.fullmatch(line)
    if m is None:
        raise MalformedResponse(f"invalid status line {line!r}: want 'HTTP/1.x 3DIGIT reason'")
    return f"1.{m[1].decode()}", int(m[2]), m[3].decode("latin-1")


def _parse_field(line: bytes, kind: str) -> tuple[str, str]:
    """Parse one ``name: value`` line; ``kind`` ("header"/"trailer") is for the message."""
    m = _FIELD_RE.fullmatch(line)
    if m is None:
        raise MalformedResponse(f"invalid {kind} line {line!r}: expected 'name: value'")
    return m[1].decode("latin-1"), m[2].strip(b" \t").decode("latin-1")


def _values(fields: Fields, name: str) -> list[str]:
    """All values of field ``name``, matched case-insensitively, in received order."""
    wanted = name.lower()
    return [v for n, v in fields if n.lower() == wanted]


def _content_length(headers: Fields) -> int | None:
    """The Content-Length of a response; more than one value or a non-number is malformed."""
    values = _values(headers, "content-length")
    if not values:
        return None
    if len(values) > 1 or not values[0].isdigit() or not values[0].isascii():
        raise MalformedResponse(f"invalid or duplicate Content-Length: {values!r}")
    return int(values[0])


def _is_chunked(headers: Fields) -> bool | None:
    """None without Transfer-Encoding; else whether the final coding is ``chunked``.

    ``chunked`` anywhere but last (or twice) is malformed: a server must apply it once,
    as the final coding. Without it a response body is delimited by connection close.
    """
    values = _values(headers, "transfer-encoding")
    if not values:
        return None
    codings = [c.strip().lower() for v in values for c in v.split(",")]
    if "chunked" in codings[:-1]:
        raise MalformedResponse(f"'chunked' is not the final transfer coding: {values!r}")
    return codings[-1] == "chunked"


class RawConnection:
    """One TCP connection to a server; use it as an async context manager.

    Bytes received but not yet consumed stay buffered across calls, so pipelined
    responses can be read one at a time. ``timeout`` is the default deadline (seconds)
    for every read; each call may override it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float) -> None:
        """Wrap an open stream pair; most callers want :meth:`open` instead."""
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self._buf = bytearray()
        self._eof = False
        self._closed = False

    @classmethod
    async def open(cls, host: str, port: int, *, timeout: float = 5.0) -> RawConnection:
        """Connect to ``host:port``; the connect itself is also bounded by ``timeout``."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout}s connecting to {host}:{port}") from None
        return cls(reader, writer, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (idempotent); errors from an already-dead peer are ignored."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), self.timeout)

    async def send(self, data: bytes) -> None:
        """Write ``data`` exactly as given and wait (bounded) until it is flushed."""
        self._writer.write(data)
        await self._drain()

    async def send_slowly(self, data: bytes, *, chunk_size: int = 1, delay: float = 0.0) -> None:
        """Write ``data`` in ``chunk_size`` pieces, draining and sleeping ``delay`` between.

        Exercises a server's handling of requests that arrive fragmented across reads.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size!r}")
        for i in range(0, len(data), chunk_size):
            if i and delay > 0:
                await asyncio.sleep(delay)
            self._writer.write(data[i : i + chunk_size])
            await self._drain()

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(self._writer.drain(), self.timeout)
        except TimeoutError:
            raise TimeoutError(
                f"timed out after {self.timeout}s waiting for the server to accept sent data"
            ) from None

    def _deadline(self, timeout: float | None) -> _Limit:
        t = self.timeout if timeout is None else timeout
        return t, asyncio.get_running_loop().time() + t

    async def _fill(self, limit: _Limit, what: str) -> bool:
        """Read more bytes into the buffer before the deadline; False at EOF or reset."""
        if self._eof:
            return False
        timeout, deadline = limit
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            data = await asyncio.wait_for(self._reader.read(_READ_SIZE), remaining)
        except TimeoutError:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what}; received so far: {_preview(self._buf)}"
            ) from None
        except ConnectionError:
            data = b""
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    async def _must_fill(self, limit: _Limit, what: str) -> None:
        if not await self._fill(limit, what):
            raise ConnectionClosed(
                f"connection closed by peer while waiting for {what}; received: {_preview(self._buf)}",
                bytes(self._buf),
            )

    async def _read_line(self, pos: int, limit: _Limit, what: str, max_end: int) -> tuple[bytes, int]:
        """Return the CRLF-terminated line at ``pos`` (without CRLF) and the next position.

        The line must end (CRLF included) by buffer offset ``max_end``: a server that
        streams an endless head must fail, not fill memory until the deadline.
        """
        while (end := self._buf.find(b"\r\n", pos)) < 0 and len(self._buf) <= max_end:
            await self._must_fill(limit, what)
        if end < 0 or end + 2 > max_end:
            raise MalformedResponse(f"{what} is too long (limit {max_end - pos} bytes)")
        return bytes(self._buf[pos:end]), end + 2

    async def _need(self, end: int, limit: _Limit, what: str) -> None:
        while len(self._buf) < end:
            await self._must_fill(limit, what)

    async def _read_one(self, head: bool, limit: _Limit) -> RawResponse:
        buf = self._buf
        status_line, pos = await self._read_line(0, limit, "the status line", MAX_HEAD)
        version, status, reason = _parse_status(status_line)
        headers: list[tuple[str, str]] = []
        while True:
            line, pos = await self._read_line(pos, limit, "the response head", MAX_HEAD)
            if not line:
                break
            headers.append(_parse_field(line, "header"))
        fields = tuple(headers)
        length, chunked = _content_length(fields), _is_chunked(fields)
        if length is not None and chunked is not None:
            raise MalformedResponse("response has both Content-Length and Transfer-Encoding")
        trailers: Fields = ()
        if head or status < 200 or status in _NO_BODY_STATUSES:
            body = b""
        elif chunked:
            body, trailers, pos = await self._read_chunked(pos, limit)
        elif length is not None:
            await self._need(pos + length, limit, f"a {length}-byte body")
            body, pos = bytes(buf[pos : pos + length]), pos + length
        else:
            while await self._fill(limit, "the end of a close-delimited body"):
                pass
            body, pos = bytes(buf[pos:]), len(buf)
        raw = bytes(buf[:pos])
        del buf[:pos]
        return RawResponse(status, reason, version, fields, body, raw, trailers)

    async def _read_chunked(self, pos: int, limit: _Limit) -> tuple[bytes, Fields, int]:
        """Decode a chunked body starting at ``pos``; return (body, trailers, end)."""
        body = bytearray()
        while True:
            line, pos = await self._read_line(pos, limit, "a chunk-size line", pos + _MAX_LINE)
            m = _CHUNK_RE.fullmatch(line)
            if m is None:
                raise MalformedResponse(f"invalid chunk-size line {line!r}")
            size = int(m[1], 16)
            if size == 0:
                break
            end = pos + size
            await self._need(end + 2, limit, f"a {size}-byte chunk")
            if self._buf[end : end + 2] != b"\r\n":
                raise MalformedResponse(
                    f"chunk data not followed by CRLF: got {bytes(self._buf[end : end + 2])!r}"
                )
            body += self._buf[pos:end]
            pos = end + 2
        trailers: list[tuple[str, str]] = []
        start = pos
        while True:
            line, pos = await self._read_line(pos, limit, "the trailer section", start + MAX_HEAD)
            if not line:
                return bytes(body), tuple(trailers), pos
            trailers.append(_parse_field(line, "trailer"))

    async def read_response(self, *, head: bool = False, timeout: float | None = None) -> RawResponse:
        """Read exactly one response; bytes after it stay buffered for the next call.

        Pass ``head=True`` when the request was HEAD: no body is read whatever the
        headers say. 1xx, 204 and 304 have no body either (a 100 Continue is returned
        as a response of its own). Otherwise the body is chunked, Content-Length or
        close-delimited. Raises ``TimeoutError`` when the whole response does not arrive
        within ``timeout``, ``ConnectionClosed`` when the peer closes first, and
        ``MalformedResponse`` for anything that is not valid HTTP/1.1 framing.
        """
        return await self._read_one(head, self._deadline(timeout))

    async def read_responses(self, n: int, *, timeout: float | None = None) -> list[RawResponse]:
        """Read ``n`` pipelined (non-HEAD) responses; ``timeout`` bounds the whole batch."""
        limit = self._deadline(timeout)
        return [await self._read_one(False, limit) for _ in range(n)]

    async def read_until_closed(self, *, timeout: float | None = None) -> bytes:
        """Return every remaining byte (buffered, then until EOF); the close is awaited too."""
        limit = self._deadline(timeout)
        while await self._fill(limit, "the server to close the connection"):
            pass
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def is_closed_by_peer(self, *, timeout: float = 2.0) -> bool:
        """Whether the peer closes (EOF or reset) within ``timeout`` without sending more.

        Returns False when data arrives (it stays buffered for the next read), when
        unread data is already buffered, or when the deadline passes with the
        connection still open, so tests can assert both ``keep-alive`` and ``close``.
        """
        if self._buf:
            return False
        try:
            return not await self._fill(self._deadline(timeout), "EOF")
        except TimeoutError:
            return False


async def request(
    host: str, port: int, data: bytes, *, head: bool = False, timeout: float = 5.0
) -> RawResponse:
    """Open a connection, send ``data``, read one response and close: for one-shot tests."""
    async with await RawConnection.open(host, port, timeout=timeout) as conn:
        await conn.send(data)
        return await conn.read_response(head=head)

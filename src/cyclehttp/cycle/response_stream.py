"""Responses whose body is produced while it is sent: streams (and, in ``files``, files).

A handler returns one of these instead of a whole body. The protocol then

1. calls ``start(request, mode, head)``: the response decides its head (status
   line, headers, framing) from the request and gives back what follows it, a
   *body sender* or None;
2. writes the head like any other answer (coalesced with the answers before it,
   in request order);
3. runs the body sender as the connection's busy task: pipelined requests behind
   it wait, as they wait for a slow async handler.

A body sender only talks to a ``BodySink`` (the protocol): ``write_body`` hands
bytes to the transport, ``writable()`` waits while the client is not reading
(the transport called ``pause_writing``), so a stream never buffers more than the
transport's high-water mark plus one item.

``StreamingResponse`` sends an iterator of bytes/str: chunked on HTTP/1.1, close
delimited on HTTP/1.0.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Protocol

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.wire import (
    CLOSE,
    CONNECTION_LINES,
    DATE,
    OCTET_STREAM,
    STATUS_LINES,
    HeadersLike,
    has_no_body,
    header_items,
    validate_header,
)

if TYPE_CHECKING:
    from cyclehttp.cycle.request import Request

__all__ = ["BodySender", "BodySink", "LongResponse", "StreamingResponse", "header_block"]

LAST_CHUNK: bytes = b"0\r\n\r\n"
_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"


class BodySink(Protocol):
    """Where a body sender writes: the connection (``HttpProtocol``)."""

    def write_body(self, data: bytes) -> None:
        """Hand ``data`` to the transport; raises ConnectionResetError once the client is gone."""

    async def writable(self) -> None:
        """Return when more may be written: at once (after one loop turn) or at ``resume_writing``."""

    async def send_file(self, file: BinaryIO, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` (zero-copy where the loop can)."""


BodySender = Callable[[BodySink], Awaitable[int]]
"""Sends a response's body to a sink; returns the body bytes sent."""


@mypyc_attr(allow_interpreted_subclasses=True)
class LongResponse:
    """Base of the responses the protocol sends over time rather than in one write."""

    __slots__ = ()

    status: int

    def start(self, request: Request, mode: int, head: bool) -> tuple[bytes, int, BodySender | None]:
        """The head to write (it may hold a short body), the connection mode, and the body sender.

        ``mode`` is the connection mode the request asked for; the answer may
        turn it into ``CLOSE`` (a close-delimited body). Called once.
        """
        raise NotImplementedError

    def last_chunk(self) -> bytes | None:
        """What ends the body cleanly if it is cut short (a chunked stream's last chunk), or None."""
        return None


def header_block(headers: HeadersLike | None, content_type: str | None) -> tuple[tuple[str, str], ...]:
    """Validated header items, with ``content_type`` first unless the headers name one."""
    items = header_items(headers)
    if content_type is not None and not any(name.lower() == "content-type" for name, _ in items):
        items.insert(0, ("Content-Type", content_type))
    for name, value in items:
        validate_header(name, value)
    return tuple(items)


def render_block(items: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in items)


def _as_bytes(item: object) -> bytes:
    if item.__class__ is bytes:
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise TypeError(f"a streamed body yielded {type(item).__name__}; yield bytes or str")


@mypyc_attr(allow_interpreted_subclasses=True)
class StreamingResponse(LongResponse):
    """A body sent as an iterator produces it: ``Response.stream(iterator)``.

    ``content`` is an async iterable (an ``async def`` generator) or a sync
    iterable of ``bytes`` or ``str`` (UTF-8). On HTTP/1.1 each non-empty item
    is one chunk of ``Transfer-Encoding: chunked``; on HTTP/1.0 the body is
    close-delimited (``Connection: close``). Empty items are skipped.
    """

    __slots__ = ("_chunked", "_iterator", "content_type", "header_block", "headers", "status")

    # What the user's code yields, checked item by item (_as_bytes): not typed bytes | str, or a
    # compiled build would refuse a bytearray before _as_bytes could take it.
    _iterator: AsyncIterator[object] | Iterator[object]

    def __init__(
        self,
        content: AsyncIterable[bytes | str] | Iterable[bytes | str],
        status: object = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = OCTET_STREAM,
    ) -> None:
        if isinstance(content, (str, bytes, bytearray, memoryview)):
            raise TypeError(
                "Response.stream needs an iterator of chunks; for a whole body use Response(body)"
            )
        # Items as the user's code yields them: checked one by one (_as_bytes), not by their type.
        iterator: AsyncIterator[object] | Iterator[object]
        if hasattr(content, "__aiter__"):
            iterator = aiter(content)  # type: ignore[arg-type]  # checked just above
        elif hasattr(content, "__iter__"):
            iterator = iter(content)
        else:
            raise TypeError(
                f"Response.stream needs an async or sync iterable of bytes/str, got {type(content).__name__}"
            )
        if not isinstance(status, int) or status not in STATUS_LINES:
            raise ValueError(f"unknown HTTP status {status!r}; use a registered status code")
        if has_no_body(status):
            raise ValueError(f"a {status} response cannot have a body; return a Response instead")
        self.status = status
        self.headers = header_block(headers, content_type)
        self.content_type = next((v for n, v in self.headers if n.lower() == "content-type"), None)
        self.header_block = render_block(self.headers)
        self._iterator = iterator
        self._chunked = True

    def start(self, request: Request, mode: int, head: bool) -> tuple[bytes, int, BodySender | None]:
        if request.http_version == "1.0":  # no chunked coding: the close ends the body
            self._chunked = False
            mode = CLOSE
        data = b"".join(
            (
                STATUS_LINES[self.status],
                DATE.line,
                self.header_block,
                _CHUNKED_LINE if self._chunked else b"",
                CONNECTION_LINES[mode],
                b"\r\n",
            )
        )
        if not head:
            return data, mode, self._send
        if isinstance(self._iterator, AsyncIterator):
            return data, mode, self._discard  # aclose() must be awaited
        _close_sync(self._iterator)
        return data, mode, None

    def last_chunk(self) -> bytes | None:
        return LAST_CHUNK if self._chunked else None

    async def _discard(self, sink: BodySink) -> int:
        await _close(self._iterator)
        return 0

    async def _send(self, sink: BodySink) -> int:
        iterator = self._iterator
        chunked = self._chunked
        sent = 0
        item: object
        try:
            if isinstance(iterator, AsyncIterator):
                async for item in iterator:
                    data = _as_bytes(item)
                    if data:
                        sink.write_body(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                        sent += len(data)
                    await sink.writable()
            else:
                for item in iterator:
                    data = _as_bytes(item)
                    if data:
                        sink.write_body(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                        sent += len(data)
                    await sink.writable()
            if chunked:
                sink.write_body(LAST_CHUNK)
        except BaseException:
            # Also on error, disconnect or shutdown: the generator's finally runs. Not an await in
            # a finally clause: compiled by mypyc, that re-raised an earlier call's exception.
            await _close(iterator)
            raise
        await _close(iterator)
        return sent

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status} {self.content_type}>"


def _close_sync(iterator: object) -> None:
    close = getattr(iterator, "close", None)
    if callable(close):
        close()


async def _close(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if callable(aclose):
        await aclose()
    else:
        _close_sync(iterator)

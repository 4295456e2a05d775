"""Request bodies read as they arrive: ``request.stream()`` on a ``stream_body`` route.

The protocol feeds a ``BodyStream`` from ``on_body`` (it stands where the
buffered route's list of chunks stands, so the parser callbacks do not change)
and the handler, already running, takes the chunks. The stream holds at most
``STREAM_BUFFER`` bytes before the protocol stops reading from the client;
taking chunks below half of that reads again. So an upload of any size costs
about that much memory per connection.

A stream ends in one of three ways: complete (the parser saw the end of the
body), failed by the server (``HTTPError`` 413 over ``max_body_size``, 408 on
``body_timeout``, 400 for broken framing: the server answers that status
itself), or failed by the client leaving (``ClientDisconnected``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.mappings import Headers
from cyclehttp.cycle.request import OneChunk, Request

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from cyclehttp.cycle.context import ConnectionContext

__all__ = ["STREAM_BUFFER", "BodyStream", "StreamingRequest"]

# Body bytes a stream holds before reading from the client pauses (a few socket reads).
STREAM_BUFFER: Final = 64 * 1024


class BodyStream:
    """The body of one request, chunk by chunk: an async iterator of ``bytes``.

    ``protocol`` is the connection's ``HttpProtocol``: told when the stream is
    over its bound (pause reading), back under it (resume), and when the
    handler first asks for the body (``Expect: 100-continue`` is answered then).
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_protocol",
        "_started",
        "_waiter",
        "complete",
        "error",
        "received",
        "trailers",
    )

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._started = False
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        """The whole body has arrived (it may not all be read yet)."""
        self.error: BaseException | None = None
        """Why the body will not arrive whole; raised to the reader."""
        self.received = 0
        self.trailers: list[tuple[bytes, bytes]] = []
        """The trailer fields of a chunked body, once it is ``complete``."""

    # -- the protocol's side ---------------------------------------------------

    def append(self, data: bytes) -> None:
        """A piece of the body from the parser (``on_body``)."""
        self._chunks.append(data)
        self._buffered += len(data)
        self.received += len(data)
        if self._buffered > STREAM_BUFFER:
            self._protocol.pause_body()
        self._wake()

    def finish(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """The parser reached the end of the body (and of its trailer section, if any)."""
        if trailers is not None:
            self.trailers = trailers
        self.complete = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The body will not arrive whole: the reader gets ``exc`` (buffered chunks are dropped)."""
        if self.complete or self.error is not None:
            return
        self.error = exc
        self._chunks.clear()
        self._buffered = 0
        self._wake()

    @property
    def waiting(self) -> bool:
        """The handler is waiting for the next chunk now."""
        return self._waiter is not None

    @property
    def buffered(self) -> int:
        return self._buffered

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the handler's side ----------------------------------------------------

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read_chunk()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def read_chunk(self) -> bytes:
        """The next piece of the body; ``b""`` at its end. Raises the stream's ``error``."""
        if not self._started:
            self._started = True
            if not self.received:
                self._protocol.send_continue()  # Expect: 100-continue: the body is wanted now
        chunks = self._chunks
        while not chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            if self._waiter is not None:
                raise RuntimeError("request.stream() is already being read by another task")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = chunks.popleft()
        self._buffered -= len(data)
        if self._buffered <= STREAM_BUFFER // 2:
            self._protocol.body_consumed()
        return data


@mypyc_attr(allow_interpreted_subclasses=True)
class StreamingRequest(Request):
    """The ``Request`` of a ``stream_body`` route: the body is read with ``stream()`` or ``read()``.

    ``request.body`` (and ``text()``, ``json()``) work only after ``await
    request.read()``; before that they raise ``RuntimeError``, since the body
    has not arrived when the handler starts.
    """

    __slots__ = ("_read_body", "_stream")

    def __init__(
        self,
        method: bytes,
        raw_path: bytes,
        query_string: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        stream: BodyStream,
        params: dict[str, Any] | None,
        http_version: str,
        context: ConnectionContext | None,
    ) -> None:
        self._stream = stream
        self._read_body: bytes | None = None
        super().__init__(method, raw_path, query_string, raw_headers, b"", params, http_version, context)

    @property
    def body(self) -> bytes:
        """The body, once ``await request.read()`` has read it; ``RuntimeError`` before."""
        if self._read_body is None:
            raise RuntimeError(
                "request.body is not available on a stream_body route before the body is read: "
                "use 'async for chunk in request.stream()', or 'body = await request.read()'"
            )
        return self._read_body

    @body.setter
    def body(self, value: bytes) -> None:
        if value:
            self._read_body = value

    def stream(self) -> BodyStream:
        """The body as it arrives: ``async for chunk in request.stream(): ...``.

        Raises ``HTTPError`` (413: over ``max_body_size``; 408: ``body_timeout``;
        400: broken framing; the server answers that status itself, whatever
        the handler returns) or ``ClientDisconnected`` (the client left).
        """
        return self._stream

    @property
    def trailers(self) -> Headers:
        """The trailer fields, once the whole body is read; ``RuntimeError`` before.

        Trailers come after the body, so they exist only when it has arrived:
        read it first (``await request.read()`` or ``request.stream()`` to its end).
        """
        if not self._stream.complete:
            raise RuntimeError(
                "request.trailers come after the body on a stream_body route: read the body first "
                "('await request.read()' or 'async for chunk in request.stream()')"
            )
        return Headers(self._stream.trailers)

    def body_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (what ``read()`` has read already, in one chunk)."""
        if self._read_body is not None:
            return OneChunk(self._read_body)
        return self._stream

    async def read(self) -> bytes:
        """The rest of the body, whole (at most ``max_body_size`` bytes); also sets ``request.body``."""
        pieces = [chunk async for chunk in self._stream]
        self._read_body = b"".join(pieces)
        return self._read_body

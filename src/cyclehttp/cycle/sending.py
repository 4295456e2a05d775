"""``LongBodySending``: answers whose body is sent after their head (streams and files).

A handler may return a *long response* (``response_stream.StreamingResponse``,
``files.FileResponse``): its head is answered like any other (coalesced, in
order), then its body is sent by the connection's busy task (``_send_long``),
which waits at ``writable()`` while the transport is paused; requests pipelined
behind it queue as behind an async handler. The connection is the body's
``BodySink``: ``write_body``, ``writable`` and ``send_file`` are all a sender
may call.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic_ns
from typing import TYPE_CHECKING, Final

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.request import Request
from cyclehttp.cycle.response_stream import BodySender, LongResponse
from cyclehttp.cycle.states import PAUSED_WRITE
from cyclehttp.cycle.targets import HandlerTarget
from cyclehttp.cycle.uploads import UploadHandling
from cyclehttp.cycle.wire import CLOSE

if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["FILE_CHUNK", "LongBodySending"]

error_log: Final = logging.getLogger("cyclehttp.error")

# A file that loop.sendfile cannot send is read and written in pieces of this size
# (one piece in flight above the transport's high-water mark at most).
FILE_CHUNK: Final = 256 * 1024


@mypyc_attr(allow_interpreted_subclasses=True)
class LongBodySending(UploadHandling):
    """Sending the body of a stream or a file after its head (see the module docstring)."""

    __slots__ = ()

    def _start_long(
        self,
        response: LongResponse,
        target: HandlerTarget,
        request: Request,
        mode: int,
        head: bool,
        start: int,
    ) -> tuple[BodySender, LongResponse, int, int] | None:
        """Put a long response's head in ``_out``, counted and timed; return what ``_send_long`` needs.

        The request's latency ends here, when the head is handed on (the body may
        take hours); the response is counted once, by its status, here too.
        """
        if self._draining:
            mode = CLOSE
        try:
            data, mode, sender = response.start(request, mode, head)
        except Exception as exc:
            self._answered(
                target, request, self._handler_failed(exc, target, request, mode, head), mode, start, False
            )
            return None
        if sender is None:  # nothing follows the head (HEAD, 304, 416, a small file): a plain answer
            self._answered(target, request, data, mode, start, False)
            return None
        target.responses[data[9] - 48] += 1
        self._long = response
        self._out.append(data)
        self._out_size += len(data)
        if self._timed:
            if start == self._read_ns:
                self._batch += 1
            else:
                self._latency.record(monotonic_ns() - start)
        return sender, response, mode, int(data[9:12])

    async def _send_long(
        self,
        sender: BodySender,
        response: LongResponse,
        mode: int,
        status: int,
        target: HandlerTarget,
        request: Request,
        start: int,
    ) -> None:
        """Send a long response's body as the connection's busy task, then go on with the queue.

        The client gone: the task is cancelled (``connection_lost``), the sender's
        ``finally`` closes its iterator or file, nothing is logged. The body failing
        after the head went out: logged, and the connection aborted, so the client
        sees a truncated body rather than a wrong one. Shutdown's deadline
        (``end_long``): a chunked stream gets its last chunk, then the close.
        """
        sent = 0
        try:
            self._flush()  # the head, after the answers before it
            sent = await sender(self)
        except asyncio.CancelledError:
            last = response.last_chunk() if self._ending else None
            transport = self._transport
            if last is None or transport is None:
                self._long = None
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            transport.write(last)
            self._stats.bytes_sent += len(last)
            mode = CLOSE
        except Exception as exc:
            self._long = None
            self._busy = None
            if self._transport is None or isinstance(exc, ConnectionError):
                error_log.debug("client went away during the body of %s: %r", target.name, exc)
            else:
                self._stats.handler_exceptions += 1
                error_log.error(
                    "the body of %s's response failed after its head was sent; aborting the connection",
                    target.name,
                    exc_info=exc,
                )
            self.abort()
            return
        self._long = None
        self._busy = None
        if self._transport is None:
            return
        if self._access is not None:
            self._log_access(request, status, sent, start)
        self._since = monotonic_ns()
        if mode == CLOSE or self._draining:
            self._close_after_flush = True
            self._queue.clear()
        self._drain_queue()
        self._flush()

    async def _discard_long(self, response: LongResponse, request: Request) -> None:
        """Release what an unsent long response holds (the client left while its handler ran)."""
        try:
            sender = response.start(request, CLOSE, True)[2]
            if sender is not None:
                await sender(self)
        except Exception as exc:
            error_log.debug("closing an unsent response failed: %r", exc)

    def write_body(self, data: bytes) -> None:
        """Part of a long response's body to the transport (``BodySink``)."""
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("the client closed the connection")
        transport.write(data)
        self._stats.bytes_sent += len(data)

    async def writable(self) -> None:
        """Wait while the client is not reading (``BodySink``); otherwise let the loop turn once.

        The turn keeps one fast stream from starving the other connections; the
        wait keeps a stream from buffering more than the transport's high-water mark.
        """
        if not self._paused & PAUSED_WRITE:
            await asyncio.sleep(0)
            return
        while self._paused & PAUSED_WRITE and self._transport is not None:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._write_waiter = waiter
            try:
                await waiter
            finally:
                self._write_waiter = None

    async def send_file(self, file: BinaryIO, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` (``BodySink``).

        ``loop.sendfile`` (zero-copy ``os.sendfile``) where the loop and transport
        support it (asyncio's loop on plain TCP); otherwise (uvloop has no
        ``loop.sendfile``; TLS) reads of ``FILE_CHUNK`` bytes, each written after
        the client has read enough of the one before.
        """
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("the client closed the connection")
        try:
            sent: int = await self._loop.sendfile(transport, file, offset, count, fallback=False)
        except (NotImplementedError, RuntimeError):  # SendfileNotAvailableError is a RuntimeError
            pass
        else:
            self._stats.bytes_sent += sent
            if sent != count:
                raise EOFError(f"{file.name!r} shrank while it was sent ({sent} of {count} bytes)")
            return sent
        file.seek(offset)
        sent = 0
        while sent < count:
            data = file.read(min(FILE_CHUNK, count - sent))
            if not data:
                raise EOFError(f"{file.name!r} shrank while it was sent ({sent} of {count} bytes)")
            self.write_body(data)
            sent += len(data)
            await self.writable()
        return sent

    def end_long(self) -> bool:
        """Shutdown's graceful deadline: stop the body being sent; False when there is none.

        A chunked stream ends cleanly (its iterator closed, the last chunk written,
        the connection closed); any other body is cut and the connection aborted.
        """
        if self._long is None or self._busy is None or self._transport is None:
            return False
        self._ending = True
        self._busy.cancel()
        return True

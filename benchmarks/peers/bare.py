"""The reference floor: the least an HTTP/1.1 server on uvloop + httptools can do.

Usage: python benchmarks/peers/bare.py --port PORT

One ``asyncio.Protocol`` feeds ``httptools.HttpRequestParser``; a couple of ``if``s
pick the answer. ``GET /`` writes a pre-built response, ``GET /users/N`` formats
``{"id":N}``, ``POST /echo`` echoes the body, anything else is 404. The ``Date``
header is refreshed once a second by a loop timer. Keep-alive follows
``should_keep_alive()``; a client that asked to close gets ``Connection: close``.
No limits, no timeouts, no timing, no logging: whatever cyclehttp (or a peer)
costs above this is the price of what it does beyond it. The responses written
for one read are joined and written once, so pipelined requests cost one send.
Only for benchmarks/peers.py; it binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from email.utils import formatdate
from typing import cast

import httptools
import uvloop

HELLO = b"Hello, World!"
TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
OCTETS = b"application/octet-stream"

_date = b""
_hello = {True: b"", False: b""}


def refresh_date(loop: asyncio.AbstractEventLoop) -> None:
    """Rebuild the Date header and the pre-built ``GET /`` responses, then again in a second."""
    global _date
    _date = formatdate(usegmt=True).encode()
    for keep_alive in (True, False):
        _hello[keep_alive] = render(200, TEXT, HELLO, keep_alive)
    loop.call_later(1.0, refresh_date, loop)


def render(status: int, content_type: bytes, body: bytes, keep_alive: bool) -> bytes:
    """One complete response: status line, Date, Content-Type, Content-Length, maybe Connection: close."""
    reason = b"OK" if status == 200 else b"Not Found" if status == 404 else b"Bad Request"
    close = b"" if keep_alive else b"Connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        reason,
        _date,
        content_type,
        len(body),
        close,
        body,
    )


class BareProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer each complete request, close when asked."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.out: list[bytes] = []
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self.closing:  # after a closing request the parser refuses anything: not an error
                self.out.append(render(400, TEXT, b"Bad Request", keep_alive=False))
            self.closing = True
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()
        if self.closing:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body.clear()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        keep_alive = self.parser.should_keep_alive()
        self.out.append(self.respond(self.parser.get_method(), self.url.split(b"?", 1)[0], keep_alive))
        self.closing = not keep_alive

    def respond(self, method: bytes, path: bytes, keep_alive: bool) -> bytes:
        """The response to one request: the couple of ``if``s that stand for a router."""
        if method == b"GET" and path == b"/":
            return _hello[keep_alive]
        if method == b"GET" and path.startswith(b"/users/") and path[7:].isdigit():
            body = json.dumps({"id": int(path[7:])}, separators=(",", ":")).encode()
            return render(200, JSON, body, keep_alive)
        if method == b"POST" and path == b"/echo":
            return render(200, OCTETS, b"".join(self.body), keep_alive)
        return render(404, TEXT, b"Not Found", keep_alive)


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:port until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    refresh_date(loop)
    server = await loop.create_server(BareProtocol, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()

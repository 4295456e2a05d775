"""The peers' app: a raw ASGI app (no framework) with the same endpoints as examples/hello.py.

Served by uvicorn (``uvicorn asgi_app:app --app-dir benchmarks/peers``) and granian
(``granian --interface asgi --working-dir benchmarks/peers asgi_app:app``) in
benchmarks/peers.py. ``GET /`` answers ``Hello, World!`` (text/plain), ``GET
/users/N`` answers ``{"id":N}`` (application/json), ``POST /echo`` echoes the
request body (application/octet-stream), anything else is 404: the same bodies
and content types as cyclehttp's example app, so every server does the same work.
No framework, so what is measured is the server and the ASGI interface itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, World!"
TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
OCTETS = b"application/octet-stream"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point: lifespan events are acknowledged, HTTP requests answered."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    status, content_type, body = await route(scope, receive)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def route(scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
    """Status, content type and body for one request: a couple of ``if``s, as in bare.py."""
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/":
        return 200, TEXT, HELLO
    if method == "GET" and path.startswith("/users/") and path[7:].isdigit():
        return 200, JSON, json.dumps({"id": int(path[7:])}, separators=(",", ":")).encode()
    if method == "POST" and path == "/echo":
        return 200, OCTETS, await read_body(receive)
    return 404, TEXT, b"Not Found"


async def read_body(receive: Receive) -> bytes:
    """The whole request body, however many ``http.request`` messages it comes in."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown, so neither server warns about a missing lifespan."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

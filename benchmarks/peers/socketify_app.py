"""The peers' socketify.py app: uWebSockets through socketify's own API, the same endpoints as asgi_app.py.

Usage: benchmarks/.venv-peers/bin/python benchmarks/peers/socketify_app.py --port PORT

``GET /`` answers ``Hello, World!`` (text/plain), ``GET /users/N`` (the route
``/users/:id``) answers ``{"id":N}`` (application/json), ``POST /echo`` echoes the
request body (application/octet-stream), anything else is 404: the same bodies and
content types as cyclehttp's example app and asgi_app.py. The handlers are plain
functions, not coroutines, so no request goes through an asyncio task: the body of
``POST /echo`` is gathered with ``res.on_data``, registered in the handler as
uWebSockets requires. One process, one thread (socketify's own ``App``, not its
CLI's workers). Only for benchmarks/peers.py; it binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json

from socketify import App, AppListenOptions, Request, Response

HELLO = b"Hello, World!"
TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
OCTETS = b"application/octet-stream"


def hello(res: Response, req: Request) -> None:
    res.send(HELLO, content_type=TEXT)


def user(res: Response, req: Request) -> None:
    user_id = req.get_parameter(0) or ""
    if not user_id.isdigit():
        not_found(res, req)
        return
    res.send(json.dumps({"id": int(user_id)}, separators=(",", ":")).encode(), content_type=JSON)


def echo(res: Response, req: Request) -> None:
    """Gather the body chunk by chunk; answer with it once the last chunk is in."""
    chunks: list[bytes] = []

    def on_data(res: Response, chunk: bytes | None, is_end: bool) -> None:
        if chunk:
            chunks.append(chunk)
        if is_end:
            res.send(b"".join(chunks), content_type=OCTETS)

    res.on_data(on_data)


def not_found(res: Response, req: Request) -> None:
    res.send(b"Not Found", content_type=TEXT, status=404)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    app = App(lifespan=False)
    app.get("/", hello)
    app.get("/users/:id", user)
    app.post("/echo", echo)
    app.any("/*", not_found)
    listening: list[AppListenOptions] = []  # socketify only logs a failure to listen, and serves nothing
    app.listen(AppListenOptions(port=port, host="127.0.0.1"), listening.append)
    if not listening:
        raise SystemExit(f"could not listen on 127.0.0.1:{port}")
    app.run()


if __name__ == "__main__":
    main()

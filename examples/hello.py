"""The example app: every kind of route cyclehttp serves.

Run it with ``cyclehttp examples.hello:routes``.
"""

import asyncio

from cyclehttp import Request, Response


def echo(request: Request) -> bytes:
    """POST /echo: the request body, byte for byte."""
    return request.body


def user(request: Request) -> dict[str, int]:
    """GET /users/{user_id:int}: a handler with a typed path parameter."""
    return {"id": request.params["user_id"]}


def fail(request: Request) -> Response:
    """GET /error: a handler that raises; the server answers 500 and keeps serving."""
    raise RuntimeError("this handler always fails")


async def sleep(request: Request) -> str:
    """GET /sleep/{ms:int}: an async handler that waits before answering."""
    await asyncio.sleep(request.params["ms"] / 1000)
    return "slept"


routes = [
    ("GET", "/", Response.text("Hello, World!")),
    ("GET", "/json", Response.json({"message": "Hello, World!"})),
    ("POST", "/echo", echo),
    ("GET", "/users/{user_id:int}", user),
    ("GET", "/error", fail),
    ("GET", "/sleep/{ms:int}", sleep),
]

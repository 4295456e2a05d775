"""Route targets: what a route answers with, checked when it is declared.

A route's target is a pre-rendered response (``PrerenderedResponse``: a ``Response``,
str, bytes or JSON data given as the target) or a ``HandlerTarget`` (user code
called with the ``Request``). ``make_target`` turns what the user declared into
one and refuses, with ``RouteError`` naming the route, what cannot serve.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeAlias

from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.response import Response
from cyclehttp.errors import RouteError
from cyclehttp.types import Handler

__all__ = ["ErrorAnswer", "HandlerTarget", "Target", "is_async_callable", "make_target"]


def is_async_callable(function: object) -> bool:
    """``async def`` functions and objects with an ``async def __call__``."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - async callable objects
    )


class HandlerTarget:
    """A route served by calling user code with a ``Request``."""

    __slots__ = ("handler", "is_async", "name", "responses", "stream_body")

    def __init__(self, handler: Handler, stream_body: bool = False) -> None:
        self.handler = handler
        self.is_async = is_async_callable(handler)
        self.name = getattr(handler, "__qualname__", None) or repr(handler)
        self.responses = [0] * 6
        """Responses sent, by the first digit of their status."""
        self.stream_body = stream_body
        """Run the handler when the headers are complete; it reads the body with ``request.stream()``."""

    def copy(self) -> HandlerTarget:
        """The same handler with its own counters (each compiled router counts for itself)."""
        return HandlerTarget(self.handler, self.stream_body)

    def __repr__(self) -> str:
        kind = "async handler" if self.is_async else "handler"
        return f"<{kind} {self.name}>"


Target: TypeAlias = PrerenderedResponse | HandlerTarget


def make_target(target: object, where: str, stream_body: bool = False) -> Target:
    """A route target from what the user declared: a Response, data, or a handler.

    ``stream_body``: the handler reads the request body as it arrives (an async handler only).
    """
    if stream_body:
        if not callable(target):
            raise RouteError(f"{where}: stream_body=True needs a handler, not {target!r}")
        built = make_target(target, where)
        if not isinstance(built, HandlerTarget) or not built.is_async:
            raise RouteError(
                f"{where}: stream_body=True needs an async handler (it reads the body with "
                "'async for chunk in request.stream()')"
            )
        built.stream_body = True
        return built
    if isinstance(target, Response):
        return PrerenderedResponse(target)
    if isinstance(target, str):
        return PrerenderedResponse(Response.text(target))
    if isinstance(target, (bytes, bytearray)):
        return PrerenderedResponse(Response(bytes(target), content_type="application/octet-stream"))
    if isinstance(target, (dict, list)):
        return PrerenderedResponse(Response.json(target))
    if callable(target):
        _check_handler_signature(target, where)
        return HandlerTarget(target)
    raise RouteError(
        f"{where}: target {target!r} is not a Response or a handler; give a Response to serve "
        "it as is, or a function taking the Request"
    )


def _check_handler_signature(handler: Callable[..., Any], where: str) -> None:
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        signature.bind(object())
    except TypeError:
        raise RouteError(
            f"{where}: handler {getattr(handler, '__qualname__', handler)!r} must accept exactly "
            f"one positional argument, the Request (its signature is {signature})"
        ) from None


ErrorAnswer: TypeAlias = Callable[[int, list[tuple[str, str]] | None], "HandlerTarget | None"]
"""The app's answer to a 404 or 405 the router makes (status, headers such as ``Allow``): a handler
target when its error handlers take that status, None to keep the pre-rendered one."""

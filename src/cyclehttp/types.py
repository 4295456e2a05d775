"""Types every layer may name: handler and hook shapes, and the small interfaces between layers.

A leaf module (as Starlette's ``types.py``): it imports nothing of cyclehttp at
run time, so the cycle can speak of "the app it serves" or "the routes it
counts" without importing the app or serving layers. The interfaces are
``typing.Protocol`` classes: ``App`` and ``Router`` satisfy them structurally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias

__all__ = [
    "AfterHook",
    "BeforeHook",
    "ErrorHandler",
    "Handler",
    "Hook",
    "RouteCounts",
    "ServedApp",
]

Handler: TypeAlias = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]
"""A route's handler: ``def handler(request)`` or ``async def handler(request)``; it returns a
``Response``, ``bytes``, ``str``, ``dict``/``list`` (JSON), a stream or a file."""

Hook: TypeAlias = Callable[..., Awaitable[None] | None]
"""A startup or shutdown hook: ``def hook(app)`` / ``async def hook(app)``, or ``def hook()`` /
``async def hook()`` (the shape is read from the signature when it is declared)."""

BeforeHook: TypeAlias = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]
"""``def hook(request)``: None to go on, or a result that answers the request."""

AfterHook: TypeAlias = Callable[[Any, Any], Any] | Callable[[Any, Any], Awaitable[Any]]
"""``def hook(request, response)``: a ``Response`` to send instead, or None to keep ``response``."""

ErrorHandler: TypeAlias = Callable[[Any, Any], Any] | Callable[[Any, Any], Awaitable[Any]]
"""``def handler(request, exc)``: answers an error status or an exception class."""


class ServedApp(Protocol):
    """The app a server serves, as requests see it (``request.app``): ``cyclehttp.App`` is one."""

    @property
    def state(self) -> Any:
        """Shared resources set by the startup hooks (``app.state.db``)."""
        ...


class RouteCounts(Protocol):
    """The answers counted per route, as the stats read them: a compiled ``Router`` is one."""

    def request_counts(self) -> list[tuple[tuple[str, str], list[int]]]:
        """``((method, route), answers by status digit)`` for every route target, in index order."""
        ...

    def reset_counts(self) -> None:
        """Zero every route's counts."""
        ...

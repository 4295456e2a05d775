"""Error handlers (``@app.error_handler``) and the default error bodies.

Theory of operation: an app's error handlers form two tables, status ->
handler and exception class -> handler, checked when declared. They cost
nothing on a request that does not fail: ``App.compile`` wraps a route's
handler (``cyclehttp.requesthooks.wrap_handler``) only when the app has error
handlers or request hooks, and the 404/405 answers stay pre-rendered static
buffers unless a handler is registered for that status.

Which handler answers an exception ``exc``:

* an ``HTTPError`` whose status has a handler: that one, called with ``exc``;
* else the handler of the most specific class in ``type(exc).__mro__``;
* else, for an exception that is not an ``HTTPError``, the ``500`` handler,
  called with ``HTTPError(500)`` whose ``__cause__`` is ``exc`` (logged first);
* else none: the server's default answer.

A handler's result is rendered like a route handler's, with one difference:
data (``str``, ``bytes``, ``dict``, ``list``) gets the error's status (and the
``HTTPError``'s headers, e.g. ``Allow``); a ``Response`` is sent as it is.

The default answers are short plain text, or JSON
(``{"error": "Not Found", "status": 404}``) when the request's ``Accept``
prefers ``application/json`` over ``text/plain`` and ``text/html``. The
pre-rendered 404 and 405 are plain text always (choosing a variant would put
an ``Accept`` lookup on the static hot path): register a handler for them to
negotiate.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from cyclehttp.app.lifespan import check_callable
from cyclehttp.cycle.response import Response
from cyclehttp.cycle.response_stream import LongResponse
from cyclehttp.cycle.wire import HeadersLike, json_bytes
from cyclehttp.errors import HTTPError
from cyclehttp.types import ErrorHandler

if TYPE_CHECKING:
    pass

__all__ = [
    "ErrorHandlerFailed",
    "ErrorHandlers",
    "check_error_handler",
    "check_error_key",
    "to_response",
]

error_log = logging.getLogger("cyclehttp.error")

"""``def handler(request, exc)`` or ``async def handler(request, exc)``, returning a result."""


class ErrorHandlerFailed(RuntimeError):
    """An error handler raised: the request is answered with the default 500 (``__cause__`` is why)."""


def check_error_key(key: object) -> int | type[BaseException]:
    """The validated key (a status 400-599 or an exception class); ``TypeError``/``ValueError`` otherwise."""
    if isinstance(key, bool) or not isinstance(key, (int, type)):
        raise TypeError(
            f"error_handler takes a status (e.g. 404) or an exception class (e.g. KeyError), got {key!r}"
        )
    if isinstance(key, int):
        if not 400 <= key <= 599:
            raise ValueError(f"error_handler status must be from 400 to 599, got {key}")
        try:
            HTTPStatus(key)
        except ValueError:
            raise ValueError(f"error_handler status {key} is not a registered HTTP status") from None
    elif not issubclass(key, Exception):
        raise TypeError(
            f"error_handler takes an exception class (a subclass of Exception), got {key.__qualname__}"
        )
    return key


def check_error_handler(key: object, handler: object) -> int | type[BaseException]:
    """``check_error_key``, and a ``TypeError`` unless ``handler`` takes ``(request, exc)``."""
    checked = check_error_key(key)
    check_callable(
        handler,
        "an error handler is a function taking the request and the exception: "
        "def handler(request, exc) or async def handler(request, exc)",
        2,
    )
    return checked


class ErrorHandlers:
    """The error handlers of one app: by status and by exception class."""

    __slots__ = ("by_class", "by_status")

    def __init__(self) -> None:
        self.by_status: dict[int, ErrorHandler] = {}
        self.by_class: dict[type[BaseException], ErrorHandler] = {}

    def __bool__(self) -> bool:
        return bool(self.by_status or self.by_class)

    def add(self, key: object, handler: ErrorHandler) -> None:
        """Register ``handler`` for a status or an exception class (checked; the last one wins)."""
        checked = check_error_handler(key, handler)
        if isinstance(checked, int):
            self.by_status[checked] = handler
        else:
            self.by_class[checked] = handler

    def handles(self, status: int) -> bool:
        """Whether an ``HTTPError(status)`` has a handler (by status, or by ``HTTPError``'s classes)."""
        return status in self.by_status or any(cls in self.by_class for cls in HTTPError.__mro__)

    def all(self) -> list[ErrorHandler]:
        return [*self.by_status.values(), *self.by_class.values()]

    def find(self, exc: Exception) -> tuple[ErrorHandler, Any, int] | None:
        """``(handler, what it is called with, status of a data result)`` for ``exc``, or None."""
        if isinstance(exc, HTTPError):
            handler = self.by_status.get(exc.status)
            if handler is not None:
                return handler, exc, exc.status
        by_class = self.by_class
        for cls in type(exc).__mro__:
            handler = by_class.get(cls)
            if handler is not None:
                return handler, exc, exc.status if isinstance(exc, HTTPError) else 500
        if not isinstance(exc, HTTPError):
            handler = self.by_status.get(500)
            if handler is not None:
                error_log.error("%r raised; the 500 error handler answers", exc, exc_info=exc)
                error = HTTPError(500)
                error.__cause__ = exc
                return handler, error, 500
        return None


def to_response(result: object, status: int = 200, headers: HeadersLike | None = None) -> object:
    """A handler's result as a ``Response`` (long responses, streams and files, as they are).

    Data gets ``status`` and ``headers``; a ``Response`` is returned unchanged.
    Raises ``TypeError`` for a result no handler may return.
    """
    if isinstance(result, (Response, LongResponse)):
        return result
    if isinstance(result, (dict, list)):
        return Response(json_bytes(result), status, headers, "application/json")
    if isinstance(result, str):
        return Response.text(result, status, headers)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), status, headers, "application/octet-stream")
    raise TypeError(f"handler returned {type(result).__name__}; return a Response, bytes, str, dict or list")

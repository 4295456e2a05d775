"""Exceptions that carry the HTTP status to answer with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["ClientDisconnected", "HTTPError", "RouteError", "StartupError"]


class HTTPError(Exception):
    """Raise in a handler to answer with an error status instead of a 500.

    ``detail`` becomes the plain-text body (the status phrase when omitted), and
    ``headers`` are added to the response, e.g. ``WWW-Authenticate`` for a 401.
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(
                f"HTTPError status must be an int from 400 to 599, got {status!r}; "
                "return a Response for other statuses"
            )
        self.status = status
        self.detail = detail
        self.headers = headers
        super().__init__(status, detail)

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else str(self.status)


class RouteError(ValueError):
    """A route was declared wrongly (bad path, unknown converter, duplicate).

    Raised when the route is declared, so a mistake stops the app at start-up
    instead of turning into 404s in production.
    """


class ClientDisconnected(ConnectionResetError):
    """The client closed the connection before the request body was complete.

    Raised by ``request.stream()`` (and ``request.read()``) on a ``stream_body``
    route; nothing can be answered any more, so the handler should just end.
    """


class StartupError(RuntimeError):
    """A startup hook (``@app.on_startup``) raised, so the server did not start.

    The message names the hook; the hook's own exception is ``__cause__``.
    Raised by ``Server.start`` before any connection was accepted; the
    shutdown hooks declared before the failed hook have run.
    """

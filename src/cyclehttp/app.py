"""App: where routes are declared.

Routes are checked as they are declared (``RouteError`` at import time, not
a 404 in production) and compiled into a ``Router`` when a server starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from .errors import RouteError
from .metrics import Stats, StatsSnapshot
from .routing import Router, RouteSpec, compile_pattern, make_target, normalize_method

__all__ = ["App", "RouteLike"]

F = TypeVar("F", bound=Callable[..., Any])

# (method or methods, path, target): the form of a route in a plain list.
RouteLike = tuple[str | Sequence[str], str, object]


class App:
    """A set of routes and the figures of the servers that run them.

    A route's target is a ``Response`` (rendered once, served with no code
    running), or a handler, sync or ``async def``, that takes the ``Request``
    and returns a ``Response``, ``bytes``, ``str`` (text/plain) or
    ``dict``/``list`` (JSON). Sync handlers run on the event loop: keep them
    short, and make anything that waits ``async``.

    ``App(routes)`` builds an app from ``(method, path, target)`` tuples.
    ``metrics_path`` (e.g. ``"/metrics"``) serves the server's figures there
    in the Prometheus text format, outside the app's routes; the
    ``--metrics-path`` option does the same and wins over it.
    """

    def __init__(self, routes: Iterable[RouteLike] = (), *, metrics_path: str | None = None) -> None:
        if metrics_path is not None and not (isinstance(metrics_path, str) and metrics_path.startswith("/")):
            raise RouteError(
                f"metrics_path must be a path starting with '/', e.g. '/metrics', got {metrics_path!r}"
            )
        self.metrics_path = metrics_path
        self._routes: list[RouteSpec] = []
        self._declared: dict[tuple[str, str], RouteSpec] = {}
        self._stats = Stats()
        for route in routes:
            if not isinstance(route, tuple) or len(route) != 3:
                raise RouteError(f"a route must be a (method, path, target) tuple, got {route!r}")
            methods, path, target = route
            self.add_route(methods, path, target)

    def add_route(self, method: str | Sequence[str], path: str, target: object) -> None:
        """Serve ``target`` for ``method`` (or each of several methods) on ``path``.

        ``path`` may hold parameters: ``{name}`` (one segment), ``{name:int}``,
        ``{name:float}``, ``{name:uuid}`` and ``{name:path}`` (the rest of the
        path, slashes included); handlers find them in ``request.params``.
        Raises ``RouteError`` for a bad path, converter or method, or a route
        declared twice.
        """
        try:
            methods = [method] if isinstance(method, str) else list(method)
        except TypeError:
            raise RouteError(
                f"invalid HTTP method {method!r}; use e.g. 'GET' or 'POST', or a list of them"
            ) from None
        if not methods:
            raise RouteError(f"route {path!r} has no methods")
        pattern = compile_pattern(path)
        where = f"route {'/'.join(map(str, methods))} {path}"
        built = make_target(target, where)
        specs: list[RouteSpec] = []
        for name in methods:
            normalized = normalize_method(name)
            key = (normalized, pattern.signature)
            if key in self._declared or any(spec.method == normalized for spec in specs):
                raise RouteError(
                    f"duplicate route: {normalized} {path} is already declared"
                    + (f" as {self._declared[key].path}" if key in self._declared else "")
                )
            specs.append(RouteSpec(normalized, pattern, built))
        for spec in specs:
            self._declared[(spec.method, pattern.signature)] = spec
            self._routes.append(spec)

    def route(self, path: str, methods: Sequence[str] = ("GET",)) -> Callable[[F], F]:
        """Decorator: ``@app.route("/items", methods=["GET", "POST"])``."""

        def decorator(handler: F) -> F:
            self.add_route(methods if isinstance(methods, str) else list(methods), path, handler)
            return handler

        return decorator

    def get(self, path: str) -> Callable[[F], F]:
        """Decorator for a GET route (HEAD is served from it too)."""
        return self.route(path, ["GET"])

    def post(self, path: str) -> Callable[[F], F]:
        """Decorator for a POST route."""
        return self.route(path, ["POST"])

    def put(self, path: str) -> Callable[[F], F]:
        """Decorator for a PUT route."""
        return self.route(path, ["PUT"])

    def patch(self, path: str) -> Callable[[F], F]:
        """Decorator for a PATCH route."""
        return self.route(path, ["PATCH"])

    def delete(self, path: str) -> Callable[[F], F]:
        """Decorator for a DELETE route."""
        return self.route(path, ["DELETE"])

    @property
    def routes(self) -> tuple[RouteSpec, ...]:
        """The declared routes, in declaration order."""
        return tuple(self._routes)

    def compile(self) -> Router:
        """The route table a server serves from (built fresh on every call)."""
        return Router(self._routes)

    @property
    def stats(self) -> StatsSnapshot:
        """A snapshot of the figures of the server most recently started for this app."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the figures (for tests and benchmarks)."""
        self._stats.reset()

    def _attach_stats(self, stats: Stats) -> None:
        self._stats = stats

"""App: where routes are declared.

Routes are checked as they are declared (``RouteError`` at import time, not
a 404 in production) and compiled into a ``Router`` when a server starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from cyclehttp.app.error_handlers import ErrorHandlers, check_error_key
from cyclehttp.app.lifespan import Lifespan, Phase, State, check_callable, check_hook
from cyclehttp.app.request_hooks import error_answer, wrap_handler
from cyclehttp.app.static import (
    DEFAULT_PRERENDER_MAX,
    DEFAULT_PRERENDER_TOTAL,
    StaticDirectory,
    StaticPlan,
    find_owner,
)
from cyclehttp.clock.stats import Stats, StatsSnapshot
from cyclehttp.config import check_flag, check_metrics_path
from cyclehttp.cycle.router import Router, RouteSpec, compile_pattern, normalize_method
from cyclehttp.cycle.targets import HandlerTarget, make_target
from cyclehttp.errors import RouteError
from cyclehttp.types import AfterHook, BeforeHook, ErrorHandler, Hook

__all__ = ["App", "RouteLike"]

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Hook)
E = TypeVar("E", bound=ErrorHandler)
B = TypeVar("B", bound=BeforeHook)
A = TypeVar("A", bound=AfterHook)

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

    ``@app.on_startup`` / ``@app.on_shutdown`` declare hooks that every
    serving process runs around its life, and ``app.state`` holds what they
    make for the handlers (``request.app.state``): see ``cyclehttp.lifecycle``.

    ``@app.error_handler(404)`` / ``@app.error_handler(KeyError)`` answer an
    error status or an exception (``cyclehttp.errorhandlers``);
    ``@app.before_request`` / ``@app.after_request`` run around every handler
    route (``cyclehttp.requesthooks``). Without any, handlers are called
    directly and the 404/405 stay pre-rendered. ``debug=True`` (or the
    ``debug`` server option) puts the traceback in a 500's body: for local
    development only, never in production.
    """

    def __init__(
        self, routes: Iterable[RouteLike] = (), *, metrics_path: str | None = None, debug: bool = False
    ) -> None:
        check_metrics_path(metrics_path)  # the server options' own checks: one rule for both
        check_flag("debug", debug)
        self.metrics_path = metrics_path
        self.debug = debug
        self._errors = ErrorHandlers()
        self._before: list[BeforeHook] = []
        self._after: list[AfterHook] = []
        self._routes: list[RouteSpec] = []
        self._declared: dict[tuple[str, str], RouteSpec] = {}
        self._origins: dict[tuple[str, str], str] = {}  # routes made by app.static(): which call
        self._stats = Stats()
        self._hooks: list[tuple[Phase, Hook]] = []
        self.state = State()
        """Shared resources (a connection pool, a cache): set them in a startup hook."""
        for route in routes:
            if not isinstance(route, tuple) or len(route) != 3:
                raise RouteError(f"a route must be a (method, path, target) tuple, got {route!r}")
            methods, path, target = route
            self.add_route(methods, path, target)

    def add_route(
        self, method: str | Sequence[str], path: str, target: object, *, stream_body: bool = False
    ) -> None:
        """Serve ``target`` for ``method`` (or each of several methods) on ``path``.

        ``path`` may hold parameters: ``{name}`` (one segment), ``{name:int}``,
        ``{name:float}``, ``{name:uuid}`` and ``{name:path}`` (the rest of the
        path, slashes included); handlers find them in ``request.params``.
        ``stream_body=True`` (an async handler): the handler runs as soon as the
        headers are in and reads the body as it arrives, ``async for chunk in
        request.stream()``, instead of receiving it whole in ``request.body``.
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
        built = make_target(target, where, stream_body)
        specs: list[RouteSpec] = []
        for name in methods:
            normalized = normalize_method(name)
            key = (normalized, pattern.signature)
            if key in self._declared or any(spec.method == normalized for spec in specs):
                raise RouteError(
                    f"duplicate route: {normalized} {path} is already declared"
                    + (f" as {self._declared[key].path}" if key in self._declared else "")
                    + (f" (a file route of {self._origins[key]})" if key in self._origins else "")
                )
            specs.append(RouteSpec(normalized, pattern, built))
        for spec in specs:
            self._declared[(spec.method, pattern.signature)] = spec
            self._routes.append(spec)

    def route(
        self, path: str, methods: Sequence[str] = ("GET",), *, stream_body: bool = False
    ) -> Callable[[F], F]:
        """Decorator: ``@app.route("/items", methods=["GET", "POST"])``."""

        def decorator(handler: F) -> F:
            self.add_route(
                methods if isinstance(methods, str) else list(methods), path, handler, stream_body=stream_body
            )
            return handler

        return decorator

    def get(self, path: str) -> Callable[[F], F]:
        """Decorator for a GET route (HEAD is served from it too)."""
        return self.route(path, ["GET"])

    def post(self, path: str, *, stream_body: bool = False) -> Callable[[F], F]:
        """Decorator for a POST route (``stream_body``: see ``add_route``)."""
        return self.route(path, ["POST"], stream_body=stream_body)

    def put(self, path: str, *, stream_body: bool = False) -> Callable[[F], F]:
        """Decorator for a PUT route (``stream_body``: see ``add_route``)."""
        return self.route(path, ["PUT"], stream_body=stream_body)

    def patch(self, path: str, *, stream_body: bool = False) -> Callable[[F], F]:
        """Decorator for a PATCH route (``stream_body``: see ``add_route``)."""
        return self.route(path, ["PATCH"], stream_body=stream_body)

    def delete(self, path: str) -> Callable[[F], F]:
        """Decorator for a DELETE route."""
        return self.route(path, ["DELETE"])

    def static(
        self,
        prefix: str,
        directory: str | os.PathLike[str],
        *,
        index: bool = False,
        prerender_max: int = DEFAULT_PRERENDER_MAX,
        prerender_total: int = DEFAULT_PRERENDER_TOTAL,
        follow_symlinks: bool = False,
        dotfiles: bool = False,
    ) -> StaticPlan:
        """Serve the files of ``directory`` under ``prefix`` (GET and HEAD).

        The directory is walked now, once. Each regular file of at most
        ``prerender_max`` bytes is read and becomes a static route of its own,
        pre-rendered like any ``Response`` target (up to ``prerender_total``
        bytes in all): served from memory, with no code running, as it was at
        this call. Every other path under the prefix (larger files, files
        added later) is resolved on disk per request and answered with
        ``Response.file``.

        Paths that could leave the directory are 404: ``..`` or ``.``
        segments, empty segments, ``%2F``, backslashes, NUL; so are symlinks
        leaving it unless ``follow_symlinks=True``, and dotfiles unless
        ``dotfiles=True``. With ``index=True`` ``prefix/dir/`` serves
        ``dir/index.html`` and ``prefix/dir`` redirects (301) to it;
        otherwise directories are 404.

        Raises ``RouteError`` for a prefix that is not a plain path starting
        with ``/``, a missing directory, bad limits, or a file whose route a
        declared route already answers (declare ``app.static`` after your own
        routes under the same prefix: its ``prefix/{path:path}`` route, tried
        in declaration order, would hide later ones). Returns a summary of
        what was pre-rendered.
        """
        declaration = StaticDirectory(
            prefix,
            directory,
            index=index,
            prerender_max=prerender_max,
            prerender_total=prerender_total,
            follow_symlinks=follow_symlinks,
            dotfiles=dotfiles,
        )
        plan = declaration.plan()
        # all checked before any is declared: no half-served directory
        clash = find_owner(self._routes, (path for path, _ in plan.routes), declaration.base)
        if clash is not None:
            path, owner = clash
            what = "the files" if path == declaration.handler_path else f"the path {path!r}"
            raise RouteError(
                f"{declaration.where}: {what} would be served where the route {owner!r} "
                "is already declared; choose another prefix, or rename or remove the route or the file"
            )
        for path, target in plan.routes:
            self.add_route("GET", path, target)
            self._origins[("GET", compile_pattern(path).signature)] = declaration.where
        return plan

    def on_startup(self, hook: H) -> H:
        """Decorator: run ``hook(app)`` or ``hook()`` (sync or ``async``) in every serving
        process, before it accepts its first connection, in declaration order.

        The hook's signature says which: one that can take one positional argument
        gets the app (aiohttp's shape), else one that takes none is called with
        nothing (Starlette's and FastAPI's). A hook that raises stops that start:
        ``Server.start`` raises ``StartupError`` (the CLI exits non-zero). Raises
        ``TypeError`` now when ``hook`` can be called neither as ``hook(app)`` nor
        as ``hook()``.
        """
        self.add_startup(hook)
        return hook

    def on_shutdown(self, hook: H) -> H:
        """Decorator: run ``hook(app)`` or ``hook()`` (sync or ``async``) in every serving
        process after its last connection is drained; the last declared runs first.

        Called with the app or with nothing as for ``on_startup`` (from the
        signature), and a ``TypeError`` now when it fits neither. A hook that raises
        is logged on ``cyclehttp.error`` and the others still run. When a startup
        hook fails, the shutdown hooks declared before it run.
        """
        self.add_shutdown(hook)
        return hook

    def add_startup(self, hook: Hook) -> None:
        """``app.on_startup`` without the decorator: ``hook(app)`` or ``hook()``, sync or ``async``."""
        check_hook(hook, "startup")
        self._hooks.append(("startup", hook))

    def add_shutdown(self, hook: Hook) -> None:
        """``app.on_shutdown`` without the decorator: ``hook(app)`` or ``hook()``, sync or ``async``."""
        check_hook(hook, "shutdown")
        self._hooks.append(("shutdown", hook))

    def error_handler(self, status_or_exception: int | type[Exception]) -> Callable[[E], E]:
        """Decorator: ``handler(request, exc)`` (sync or ``async``) answers that status or exception.

        A status (400-599) matches an ``HTTPError`` with it, raised by a handler
        or by the server (404: no route, 405: wrong method, ``exc.headers``
        holding ``Allow``); the ``500`` handler also gets every exception no
        class handler takes, as ``HTTPError(500)`` with the exception as
        ``__cause__``. An exception class matches its subclasses too: the most
        specific class of the exception's MRO wins. The handler returns what a
        route handler may; data (str, bytes, dict, list) is sent with the
        error's status and the ``HTTPError``'s headers. A handler that raises
        makes the default 500, logged. Raises ``TypeError``/``ValueError`` now
        for a status outside 400-599, a class that is not an exception, or a
        handler that cannot be called as ``handler(request, exc)``.
        """

        def decorator(handler: E) -> E:
            self.add_error_handler(status_or_exception, handler)
            return handler

        check_error_key(status_or_exception)  # now, not only when the decorator is applied
        return decorator

    def add_error_handler(self, status_or_exception: int | type[Exception], handler: ErrorHandler) -> None:
        """``app.error_handler`` without the decorator; the last one declared for a key wins."""
        self._errors.add(status_or_exception, handler)

    def before_request(self, hook: B) -> B:
        """Decorator: run ``hook(request)`` (sync or ``async``) before every handler route's handler.

        Before hooks run in declaration order; the first one to return something
        other than None answers the request with it (e.g. a 401 for a missing
        token) and the handler does not run. Static routes do not run hooks.
        A hook that raises is a 500 (or what a matching error handler makes).
        """
        check_callable(hook, "a before_request hook is a function taking the request: def hook(request)", 1)
        self._before.append(hook)
        return hook

    def after_request(self, hook: A) -> A:
        """Decorator: run ``hook(request, response)`` (sync or ``async``) on every handler route's answer.

        ``response`` is the ``Response`` about to be sent (the handler's result
        turned into one; streams and files skip the hooks); the hook returns a
        new one (``response.with_headers({...})``) or None to keep it, changed or
        not (``response.set_cookie(...)``; a shared response is copied before the
        hooks get it). After hooks run in declaration order, each on the previous
        one's response.
        """
        check_callable(
            hook,
            "an after_request hook is a function taking the request and the response: "
            "def hook(request, response)",
            2,
        )
        self._after.append(hook)
        return hook

    def lifespan(self) -> Lifespan:
        """One run of the hooks (``Server.start`` makes one): ``await start()``, later ``await stop()``."""
        return Lifespan(self, self._hooks)

    @property
    def routes(self) -> tuple[RouteSpec, ...]:
        """The declared routes, in declaration order."""
        return tuple(self._routes)

    def compile(self) -> Router:
        """The route table a server serves from (built fresh on every call).

        Handlers are wrapped with the request hooks and error handlers only when
        the app declares some: otherwise the handler itself is called.
        """
        errors = self._errors if self._errors else None
        if errors is None and not self._before and not self._after:
            return Router(self._routes)
        answer = None if errors is None else error_answer(errors)
        routes = [
            RouteSpec(
                spec.method,
                spec.pattern,
                HandlerTarget(
                    wrap_handler(spec.target.handler, self._before, self._after, errors),
                    spec.target.stream_body,
                ),
            )
            if isinstance(spec.target, HandlerTarget)
            else spec
            for spec in self._routes
        ]
        return Router(routes, answer)

    @property
    def stats(self) -> StatsSnapshot:
        """A snapshot of the figures of the server most recently started for this app."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the figures (for tests and benchmarks)."""
        self._stats.reset()

    def attach_stats(self, stats: Stats) -> None:
        """Show ``stats`` as ``app.stats`` (a server serving this app calls it when it starts)."""
        self._stats = stats

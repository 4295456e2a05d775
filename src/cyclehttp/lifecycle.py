"""Start-up and shutdown hooks, and ``app.state``.

Theory of operation: the hooks of an app form one list in declaration order,
startup and shutdown hooks interleaved. A ``Lifespan`` is one run of that
list in one serving process (``Server.start`` makes one unless told not to):

* ``start()`` calls the startup hooks front to back, before the process
  accepts its first connection.
* ``stop()`` calls the shutdown hooks back to front (LIFO, like
  ``contextlib.ExitStack``), after the last connection is drained: a hook
  declared later may use what an earlier one made (a cache on a database
  pool), so it is undone first. A shutdown hook that raises is logged on
  ``cyclehttp.error``; the others still run.
* When startup hook *k* raises, the shutdown hooks declared *before* hook *k*
  run (back to front), the ones declared after it do not: declare each
  shutdown hook just after the startup hook whose work it undoes, and a
  failed start undoes exactly what was done. Then ``start()`` raises
  ``StartupError`` with the hook's exception as ``__cause__``.

Every hook has one shape: a callable taking the app, ``def hook(app)`` or
``async def hook(app)``; checked when it is declared.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from .errors import StartupError

if TYPE_CHECKING:
    from .app import App

__all__ = ["Hook", "Lifespan", "State", "check_callable", "check_hook", "hook_name", "is_async_callable"]

error_log = logging.getLogger("cyclehttp.error")

Hook = Callable[["App"], Awaitable[None] | None]
"""A startup or shutdown hook: ``def hook(app)`` or ``async def hook(app)``."""

Phase = Literal["startup", "shutdown"]


class State(SimpleNamespace):
    """``app.state``: attributes for what the hooks make and the handlers share.

    ``app.state.db = pool`` in a startup hook, ``request.app.state.db`` in a
    handler. Reading an attribute nobody set raises an ``AttributeError`` that
    says so.
    """

    def __getattr__(self, name: str) -> Any:  # called only when the attribute is missing
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"app.state has no attribute {name!r}; set it first, e.g. in a startup hook: "
            f"app.state.{name} = ... (set so far: {', '.join(sorted(vars(self))) or 'nothing'})"
        )


def hook_name(hook: object) -> str:
    """``module.qualname`` of a hook, for messages."""
    name = getattr(hook, "__qualname__", None)
    if not isinstance(name, str):  # a partial, an instance with __call__
        return repr(hook)
    module = getattr(hook, "__module__", None)
    return f"{module}.{name}" if module else name


def is_async_callable(function: object) -> bool:
    """``async def`` functions and objects with an ``async def __call__``."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - async callable objects
    )


def check_callable(function: object, expected: str, arguments: int) -> None:
    """Raise ``TypeError`` unless ``function`` can be called with ``arguments`` positional arguments."""
    if not callable(function):
        raise TypeError(f"{expected}; got {function!r}, which is not callable")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none: let the call decide
        return
    try:
        signature.bind(*([None] * arguments))
    except TypeError:
        shown = str(signature.replace(return_annotation=inspect.Signature.empty))
        raise TypeError(f"{expected}; {hook_name(function)} takes {shown}") from None


def check_hook(hook: object, phase: Phase) -> None:
    """Raise ``TypeError`` unless ``hook`` can be called as ``hook(app)``."""
    check_callable(
        hook, f"a {phase} hook is a function taking the app: def hook(app) or async def hook(app)", 1
    )


class Lifespan:
    """One run of an app's hooks in one process: ``await start()``, later ``await stop()``."""

    __slots__ = ("_app", "_hooks", "_undo")

    def __init__(self, app: App, hooks: list[tuple[Phase, Hook]]) -> None:
        self._app = app
        self._hooks = list(hooks)  # a snapshot: hooks declared after the start wait for the next
        self._undo: list[Hook] | None = None  # the shutdown hooks to run, once start() returned

    async def start(self) -> None:
        """Run the startup hooks in declaration order; on a failure undo and raise ``StartupError``."""
        for position, (phase, hook) in enumerate(self._hooks):
            if phase != "startup":
                continue
            try:
                await _call(hook, self._app)
            except Exception as exc:
                name = hook_name(hook)
                error_log.error("startup hook %s failed", name, exc_info=True)
                await _run_shutdown(
                    self._app, [h for p, h in self._hooks[:position] if p == "shutdown"], after=name
                )
                raise StartupError(f"startup hook {name} failed: {type(exc).__name__}: {exc}") from exc
        self._undo = [hook for phase, hook in self._hooks if phase == "shutdown"]

    async def stop(self) -> None:
        """Run the shutdown hooks, last declared first; only once, and only after ``start()`` succeeded."""
        undo, self._undo = self._undo, None
        if undo:
            await _run_shutdown(self._app, undo)


async def _call(hook: Hook, app: App) -> None:
    result = hook(app)
    if inspect.isawaitable(result):
        await result


async def _run_shutdown(app: App, hooks: list[Hook], after: str | None = None) -> None:
    for hook in reversed(hooks):
        try:
            await _call(hook, app)
        except Exception:
            error_log.error(
                "shutdown hook %s failed%s",
                hook_name(hook),
                f" (while undoing the start after {after} failed)" if after else "",
                exc_info=True,
            )

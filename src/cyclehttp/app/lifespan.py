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
* A stop asked for during the start (``Server.serve``'s first signal) is
  looked at between two hooks: no later hook starts, and the start is undone
  the same way. A start cancelled inside a hook (the second signal) too.

A hook takes the app or nothing: ``def hook(app)`` / ``async def hook(app)``
(aiohttp's shape) or ``def hook()`` / ``async def hook()`` (Starlette's and
FastAPI's). Which one is read from the hook's signature, never found by
trying calls (a ``TypeError`` raised inside a hook is its failure, not a cue
to call it another way): a hook that can be called with one positional
argument gets the app; else one that can be called with none gets nothing;
anything else is a ``TypeError`` when it is declared. A builtin without a
signature gets the app. ``app.add_startup``/``add_shutdown`` check the shape
as the hook is declared; a ``Lifespan`` reads it from the same signature
once, in its snapshot, before any hook runs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, cast

from cyclehttp.errors import StartupError

if TYPE_CHECKING:
    from cyclehttp.types import Hook, ServedApp

__all__ = [
    "Lifespan",
    "State",
    "check_callable",
    "check_hook",
    "hook_name",
    "hook_takes_app",
]

error_log = logging.getLogger("cyclehttp.error")

HookResult = Awaitable[None] | None
"""A startup or shutdown hook: ``def hook(app)`` or ``async def hook(app)``, ``def hook()`` or
``async def hook()``."""

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


def hook_takes_app(hook: object, phase: Phase) -> bool:
    """Whether ``hook`` is called as ``hook(app)`` (True) or ``hook()`` (False), from its signature.

    One positional argument wins when both fit (``def hook(app=None)``,
    ``def hook(*args)``): the app is what a hook that can take it wants.
    Raises ``TypeError`` naming both accepted shapes when neither fits.
    """
    expected = (
        f"a {phase} hook takes the app or nothing: def hook(app) / async def hook(app), "
        "or def hook() / async def hook()"
    )
    if not callable(hook):
        raise TypeError(f"{expected}; got {hook!r}, which is not callable")
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # some builtins have none: called with the app, let the call decide
        return True
    for arguments in (1, 0):
        try:
            signature.bind(*([None] * arguments))
        except TypeError:
            continue
        return arguments == 1
    shown = str(signature.replace(return_annotation=inspect.Signature.empty))
    raise TypeError(f"{expected}; {hook_name(hook)} takes {shown}")


def check_hook(hook: object, phase: Phase) -> None:
    """Raise ``TypeError`` unless ``hook`` can be called as ``hook(app)`` or ``hook()``: at declaration."""
    hook_takes_app(hook, phase)


class _Declared:
    """A hook as it will be called: with the app or with nothing, decided from its signature."""

    __slots__ = ("hook", "phase", "takes_app")

    def __init__(self, phase: Phase, hook: Hook) -> None:
        self.phase = phase
        self.hook = hook
        self.takes_app = hook_takes_app(hook, phase)

    async def call(self, app: ServedApp) -> None:
        """Call the hook the way its signature said, and await what it returns if that is awaitable."""
        if self.takes_app:
            result = cast(Callable[["ServedApp"], HookResult], self.hook)(app)
        else:
            result = cast(Callable[[], HookResult], self.hook)()
        if inspect.isawaitable(result):
            await result


class Lifespan:
    """One run of an app's hooks in one process: ``await start()``, later ``await stop()``."""

    __slots__ = ("_app", "_hooks", "_undo")

    def __init__(self, app: ServedApp, hooks: list[tuple[Phase, Hook]]) -> None:
        self._app = app
        # A snapshot (hooks declared after the start wait for the next), each hook's
        # shape read from its signature here, before any of them runs.
        self._hooks = [_Declared(phase, hook) for phase, hook in hooks]
        self._undo: list[_Declared] | None = None  # the shutdown hooks to run, once start() returned

    async def start(self, stop_requested: Callable[[], bool] | None = None) -> bool:
        """Run the startup hooks in declaration order; on a failure undo and raise ``StartupError``.

        Returns True when every startup hook ran. ``stop_requested`` (a stop
        signal came) is asked before each hook: when it says True the start
        ends there, undone like a failed one (the shutdown hooks declared before
        the next hook run), and ``start`` returns False. Cancelled while a hook
        runs (a second signal, for a hook that hangs): undone the same way, then
        the ``CancelledError`` goes on.
        """
        for position, declared in enumerate(self._hooks):
            if declared.phase != "startup":
                continue
            if stop_requested is not None and stop_requested():
                await _run_shutdown(self._app, self._declared_before(position), after="a stop signal")
                return False
            try:
                await declared.call(self._app)
            except asyncio.CancelledError:
                name = hook_name(declared.hook)
                error_log.warning("startup hook %s cancelled", name)
                await _run_shutdown(self._app, self._declared_before(position), after=f"{name} was cancelled")
                raise
            except Exception as exc:
                name = hook_name(declared.hook)
                error_log.error("startup hook %s failed", name, exc_info=True)
                await _run_shutdown(self._app, self._declared_before(position), after=f"{name} failed")
                raise StartupError(f"startup hook {name} failed: {type(exc).__name__}: {exc}") from exc
        self._undo = [declared for declared in self._hooks if declared.phase == "shutdown"]
        return True

    def _declared_before(self, position: int) -> list[_Declared]:
        """The shutdown hooks declared before hook ``position``: what undoes the hooks that ran."""
        return [declared for declared in self._hooks[:position] if declared.phase == "shutdown"]

    async def stop(self) -> None:
        """Run the shutdown hooks, last declared first; only once, and only after ``start()`` succeeded."""
        undo, self._undo = self._undo, None
        if undo:
            await _run_shutdown(self._app, undo)


async def _run_shutdown(app: ServedApp, hooks: list[_Declared], after: str | None = None) -> None:
    for declared in reversed(hooks):
        try:
            await declared.call(app)
        except Exception:
            error_log.error(
                "shutdown hook %s failed%s",
                hook_name(declared.hook),
                f" (while undoing the start after {after})" if after else "",
                exc_info=True,
            )

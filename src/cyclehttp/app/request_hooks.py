"""Request hooks (``@app.before_request``, ``@app.after_request``) and the handler wrapper.

Theory of operation: hooks and error handlers are applied by wrapping a
route's handler once, in ``App.compile``, and only when the app declares any:
without them the compiled route calls the user's handler directly, the same
code path as an app that has never heard of hooks. Static routes (a
``Response`` target, ``app.static`` files, the metrics page) are pre-rendered
buffers and never pass through hooks.

One request through a wrapped handler:

1. the before hooks, in declaration order: ``hook(request)``; the first that
   returns something other than None answers the request (the handler and the
   later before hooks do not run);
2. else the handler;
3. an exception in 1 or 2 goes to the matching error handler
   (``cyclehttp.errorhandlers``); none matches: it propagates to the server
   (500, or the ``HTTPError``'s status);
4. the after hooks, in declaration order, on the answer of 1, 2 or 3 turned
   into a ``Response``: ``hook(request, response)`` returns a new ``Response``
   (e.g. ``response.with_headers(...)``) or None to keep it, which it may have
   changed (``response.set_cookie(...)``: a shared, frozen response is copied
   before the hooks see it, so a change never reaches other requests). Streams and files
   (``Response.stream``, ``Response.file``) skip them. An after hook that
   raises: the error handlers decide, and the after hooks do not run again.

An error handler that raises makes the default 500 (``ErrorHandlerFailed``).
The wrapper is sync when the handler, hooks and error handlers all are, so a
sync handler does not become a task.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cyclehttp.app.error_handlers import ErrorHandlerFailed, ErrorHandlers, to_response
from cyclehttp.app.lifespan import hook_name
from cyclehttp.cycle.response import Response
from cyclehttp.cycle.targets import ErrorAnswer, HandlerTarget, is_async_callable
from cyclehttp.errors import HTTPError
from cyclehttp.types import AfterHook, BeforeHook, Handler

if TYPE_CHECKING:
    from cyclehttp.cycle.request import Request

__all__ = ["error_answer", "raise_status", "wrap_handler"]


def raise_status(status: int, headers: Sequence[tuple[str, str]] | None = None) -> Handler:
    """A handler that raises ``HTTPError(status, headers=headers)``: the 404/405 answer with a handler."""

    def answer(request: Request) -> Any:
        raise HTTPError(status, headers=headers)

    answer.__qualname__ = f"<{status} answer>"
    return answer


def error_answer(errors: ErrorHandlers) -> ErrorAnswer:
    """The router's 404 and 405 for an app with error handlers: a handler target that raises the
    ``HTTPError`` for them to answer, when one takes that status (else None: pre-rendered)."""

    def answer(status: int, headers: list[tuple[str, str]] | None) -> HandlerTarget | None:
        if not errors.handles(status):
            return None
        return HandlerTarget(wrap_handler(raise_status(status, headers), errors=errors))

    return answer


def _checked_after(result: object, hook: object) -> Response | None:
    if result is None or isinstance(result, Response):
        return result
    raise TypeError(
        f"after_request hook {hook_name(hook)} returned {type(result).__name__}; "
        "return a Response (e.g. response.with_headers(...)) or None"
    )


def _not_async(result: object, what: object) -> None:
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(f"{hook_name(what)} returned an awaitable; declare it with async def")


def wrap_handler(
    handler: Handler,
    before: Sequence[BeforeHook] = (),
    after: Sequence[AfterHook] = (),
    errors: ErrorHandlers | None = None,
) -> Handler:
    """``handler`` with the hooks and error handlers around it (see the module's docstring)."""
    before = tuple(before)
    after = tuple(after)
    everything: list[object] = [handler, *before, *after, *(errors.all() if errors else ())]
    wrapper = (
        _async_wrapper(handler, before, after, errors)
        if any(is_async_callable(f) for f in everything)
        else _sync_wrapper(handler, before, after, errors)
    )
    wrapper.__qualname__ = getattr(handler, "__qualname__", None) or repr(handler)
    wrapper.__module__ = getattr(handler, "__module__", None) or wrapper.__module__
    return wrapper


def _sync_wrapper(
    handler: Handler,
    before: tuple[BeforeHook, ...],
    after: tuple[AfterHook, ...],
    errors: ErrorHandlers | None,
) -> Handler:
    def recover(request: Request, exc: Exception) -> Any:
        found = errors.find(exc) if errors else None
        if found is None:
            raise exc
        error_handler, argument, status = found
        try:
            result = error_handler(request, argument)
            _not_async(result, error_handler)
            return to_response(result, status, argument.headers if isinstance(argument, HTTPError) else None)
        except Exception as failure:
            raise ErrorHandlerFailed(
                f"error handler {hook_name(error_handler)} raised while handling {exc!r}"
            ) from failure

    def wrapped(request: Request) -> Any:
        try:
            result = None
            for hook in before:
                result = hook(request)
                _not_async(result, hook)
                if result is not None:
                    break
            else:
                result = handler(request)
        except Exception as exc:
            result = recover(request, exc)
        if not after:
            return result
        try:
            response = to_response(result)
            if not isinstance(response, Response):  # a stream or a file
                return response
            if response.frozen:  # shared by many requests: the hooks change a copy of it
                response = response.with_headers(())
            for after_hook in after:
                returned = after_hook(request, response)
                _not_async(returned, after_hook)
                response = _checked_after(returned, after_hook) or response
            return response
        except Exception as exc:
            return recover(request, exc)

    return wrapped


def _async_wrapper(
    handler: Handler,
    before: tuple[BeforeHook, ...],
    after: tuple[AfterHook, ...],
    errors: ErrorHandlers | None,
) -> Handler:
    async def recover(request: Request, exc: Exception) -> Any:
        found = errors.find(exc) if errors else None
        if found is None:
            raise exc
        error_handler, argument, status = found
        try:
            result = error_handler(request, argument)
            if inspect.isawaitable(result):
                result = await result
            return to_response(result, status, argument.headers if isinstance(argument, HTTPError) else None)
        except Exception as failure:
            raise ErrorHandlerFailed(
                f"error handler {hook_name(error_handler)} raised while handling {exc!r}"
            ) from failure

    async def wrapped(request: Request) -> Any:
        try:
            result = None
            for hook in before:
                result = hook(request)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    break
            else:
                result = handler(request)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            result = await recover(request, exc)
        if not after:
            return result
        try:
            response = to_response(result)
            if not isinstance(response, Response):
                return response
            if response.frozen:
                response = response.with_headers(())
            for after_hook in after:
                returned = after_hook(request, response)
                if inspect.isawaitable(returned):
                    returned = await returned
                response = _checked_after(returned, after_hook) or response
            return response
        except Exception as exc:
            return await recover(request, exc)

    return wrapped

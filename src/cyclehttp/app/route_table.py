"""``cyclehttp routes module:attr``: the compiled route table, as text.

One row per target index of the ``Router`` (what a request's lookup gives):
its methods, its path pattern and what answers, a pre-rendered static buffer
(status, type, size, and its variants: encoded forms and the 304) or a
handler (qualified name, sync or async, ``stream_body``). The app's routes
come first, by index, then the built-in answers: the metrics page, the 405
of each path and the 404 (index 0).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from typing import Final

from cyclehttp.app.application import App
from cyclehttp.clock.stats import ANY_METHOD
from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.request import Request
from cyclehttp.cycle.response import Response
from cyclehttp.cycle.router import NOT_FOUND_INDEX, SERVER_WIDE, PathEntry
from cyclehttp.cycle.targets import HandlerTarget, Target

__all__ = ["WIDTH", "describe_target", "format_routes", "format_size"]

WIDTH: Final = 80
_METHODS_MAX: Final = 12
_PATH_MAX: Final = 28


def format_size(size: int) -> str:
    """``13 B``, ``1.2 KiB``, ``3.4 MiB``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def describe_target(target: Target) -> str:
    """What answers: ``static 200 text/plain 13 B; gzip 40 B, 304`` or ``handler mod.fn (sync)``."""
    if isinstance(target, PrerenderedResponse):
        message = target.response
        parts = [f"static {message.status}"]
        if message.content_type:
            parts.append(message.content_type.partition(";")[0])
        parts.append(format_size(len(target.body)))
        variants = [f"{variant.coding} {format_size(len(variant.body))}" for variant in target.encoded]
        if target.not_modified is not None:
            variants.append("304")
        return " ".join(parts) + (f"; {', '.join(variants)}" if variants else "")
    handler = target.handler
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None)
    name = f"{module}.{qualname}" if module and qualname else target.name
    flags = ["async" if target.is_async else "sync"]
    if target.stream_body:
        flags.append("stream_body")
    return f"handler {name} ({', '.join(flags)})"


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken after its commas and semicolons first.

    A name longer than the line is kept whole (it must stay copyable): that line overflows.
    """
    lines: list[str] = []
    for piece in re.split(r"(?<=[;,]) ", text):
        if lines and len(lines[-1]) + 1 + len(piece) <= width:
            lines[-1] += " " + piece
        elif len(piece) <= width:
            lines.append(piece)
        else:
            lines.extend(textwrap.wrap(piece, width - 2, break_long_words=False, break_on_hyphens=False))
    return lines


def _metrics_page(request: Request) -> Response:  # pragma: no cover - never called, only listed
    raise NotImplementedError


def _methods_by_index(entries: Iterable[PathEntry]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for entry in entries:
        for method, index in entry.methods.items():
            found.setdefault(index, []).append(method.decode("ascii"))
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    for methods in found.values():
        methods.sort(key=lambda m: (order.index(m) if m in order else len(order), m))
    return found


def format_routes(app: App, *, metrics_path: str | None = None, title: str | None = None) -> str:
    """The route table of ``app`` as text, at most ``WIDTH`` columns wide where names allow.

    ``metrics_path`` (or the app's own ``metrics_path``) adds the metrics page, as a server
    would. Raises ``RouteError`` when a route already answers that path.
    """
    router = app.compile()
    first_builtin = len(router.targets)
    path = metrics_path or app.metrics_path
    if path is not None:
        router.add_internal(path, HandlerTarget(_metrics_page))
    methods = _methods_by_index([*router.exact.values(), *router.dynamic])
    not_allowed = {entry.not_allowed for entry in [*router.exact.values(), *router.dynamic]}

    rows: list[tuple[int, str, str, str]] = []
    builtin: list[tuple[int, str, str, str]] = []
    for index, (target, (_, route)) in enumerate(zip(router.targets, router.labels, strict=True)):
        if index == NOT_FOUND_INDEX:
            builtin.append((index, ANY_METHOD, "(no route)", "built-in 404 Not Found"))
        elif index == router.server_options:
            allow = (
                dict(target.response.headers).get("Allow", "")
                if isinstance(target, PrerenderedResponse)
                else ""
            )
            builtin.append((index, "OPTIONS", route, f"built-in 200, Allow: {allow}"))
        elif index in not_allowed and route == SERVER_WIDE:
            continue  # never answered: any method but OPTIONS on "*" is a 400 before the lookup
        elif index in not_allowed:
            allow = (
                dict(target.response.headers).get("Allow", "")
                if isinstance(target, PrerenderedResponse)
                else ""
            )
            builtin.append((index, "other", route, f"built-in 405, Allow: {allow}"))
        elif index >= first_builtin:
            builtin.append((index, " ".join(methods.get(index, [])), route, "built-in metrics page"))
        else:
            rows.append((index, " ".join(methods.get(index, [])), route, describe_target(target)))
    builtin.sort(key=lambda row: (row[0] == NOT_FOUND_INDEX, row[0]))  # by index, the 404 last

    handlers = sum(1 for _, _, _, what in rows if what.startswith("handler"))
    lines = []
    if title:
        lines.append(title)
    lines.append(
        f"{len(rows)} route targets: {len(rows) - handlers} static, {handlers} handlers; "
        f"{len(builtin)} built-in"
    )
    everything = rows + builtin
    index_width = max(len("#"), *(len(str(row[0])) for row in everything))
    methods_width = min(_METHODS_MAX, max(len("methods"), *(len(row[1]) for row in everything)))
    path_width = min(_PATH_MAX, max(len("path"), *(len(row[2]) for row in everything)))
    indent = index_width + 2 + methods_width + 2 + path_width + 2

    def render(row: tuple[int, str, str, str]) -> None:
        index, method_text, route, what = row
        head = f"{index:>{index_width}}  {method_text:<{methods_width}}  {route:<{path_width}}  "
        if len(head) > indent:  # a long method list or path: the target goes on the next line
            lines.append(head.rstrip())
            head = " " * indent
        for i, part in enumerate(_wrap(what, max(WIDTH - indent, 24))):
            lines.append((head if i == 0 else " " * (indent + 2)) + part)

    lines.append("")
    lines.append(f"{'#':>{index_width}}  {'methods':<{methods_width}}  {'path':<{path_width}}  target")
    for row in rows:
        render(row)
    lines.append("")
    lines.append("built-in:")
    for row in builtin:
        render(row)
    return "\n".join(lines) + "\n"

"""The ``cyclehttp stats URL`` command: read a running server's metrics page and draw it.

The reading is :mod:`cyclehttp.clock.metrics_reader` and the drawing
:mod:`cyclehttp.clock.stats_view`; this module is the command line around them:
its options, the terminal (width, whether it can draw Unicode) and ``--watch``,
which redraws until Ctrl-C and keeps retrying while the page cannot be read.
``cyclehttp stats ...`` (:mod:`cyclehttp.serving.cli`) hands its arguments to :func:`main`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final, TextIO

from cyclehttp.clock.metrics_reader import MetricsError, MetricsPage, fetch, metrics_url, parse
from cyclehttp.clock.stats_view import UNICODE_CHARS, render, render_error
from cyclehttp.serving.options import number

__all__ = ["main"]

PROG: Final = "cyclehttp stats"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show a running cyclehttp server's metrics page in the terminal.",
    )
    parser.add_argument(
        "url",
        metavar="URL",
        help="the server's metrics page, e.g. 127.0.0.1:8000 (means http://127.0.0.1:8000/metrics)",
    )
    parser.add_argument("--watch", action="store_true", help="redraw every --interval seconds until Ctrl-C")
    parser.add_argument(
        "--interval",
        type=number(float, minimum=0.1, what="seconds"),
        default=1.0,
        metavar="SECONDS",
        help="seconds between redraws (default: 1)",
    )
    parser.add_argument("--ascii", action="store_true", help="draw with ASCII characters only")
    parser.add_argument(
        "--width",
        type=number(int, minimum=40, what="a whole number of columns"),
        metavar="N",
        help="columns to draw (default: the terminal's, from 60 to 120)",
    )
    return parser


def _terminal_width() -> int:
    return min(max(shutil.get_terminal_size((80, 24)).columns, 60), 120)


def _can_draw_unicode(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        UNICODE_CHARS.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


_sleep: Callable[[float], None] = time.sleep
"""How ``--watch`` waits between redraws (tests replace it)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cyclehttp stats``; returns the exit status (0 ok, 1 cannot read the page, 2 bad input)."""
    args = _build_parser().parse_args(argv)
    out = sys.stdout
    try:
        url = metrics_url(args.url)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    ascii_only = bool(args.ascii) or not _can_draw_unicode(out)

    def width() -> int:
        return int(args.width) if args.width is not None else _terminal_width()

    if not args.watch:
        try:
            page = parse(fetch(url))
        except MetricsError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130  # interrupted while waiting for the server: no traceback
        out.write(render(page, width=width(), ascii_only=ascii_only, url=url) + "\n")
        out.flush()
        return 0
    try:
        return _watch(url, float(args.interval), width, ascii_only, out)
    except KeyboardInterrupt:
        return 0


def _watch(url: str, every: float, width: Callable[[], int], ascii_only: bool, out: TextIO) -> int:
    """Redraw until interrupted; a failure before the first success ends with status 1."""
    tty = out.isatty()
    previous: MetricsPage | None = None
    previous_at = 0.0
    last_ok: float | None = None
    screens = 0
    while True:
        started = time.monotonic()
        try:
            page = parse(fetch(url, timeout=max(5.0, every)))
        except MetricsError as exc:
            if last_ok is None:
                print(f"{PROG}: error: {exc}", file=sys.stderr)
                return 1
            screen = render_error(
                str(exc),
                every=every,
                width=width(),
                ascii_only=ascii_only,
                url=url,
                version=previous.version if previous is not None else None,
                last_ok=last_ok,
            )
        else:
            interval = started - previous_at if previous is not None else None
            screen = render(
                page, width=width(), previous=previous, interval=interval, ascii_only=ascii_only, url=url
            )
            previous, previous_at, last_ok = page, started, time.time()
        if tty:
            screen = "\x1b[H\x1b[2J" + screen  # one write: less flicker
        elif screens:
            screen = "\n" + screen
        out.write(screen + "\n")
        out.flush()
        screens += 1
        _sleep(max(every - (time.monotonic() - started), 0.0))

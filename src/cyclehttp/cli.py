"""The ``cyclehttp`` command: ``cyclehttp module:attr [options]``, and ``cyclehttp stats URL``.

Mistakes in what the user typed (a bad target, a bad option) print one line
starting with ``cyclehttp: error:`` and exit with status 2, like argparse.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import fields

from . import __version__
from .accesslog import ACCESS_LOGGER
from .app import App
from .config import DEFAULTS, Config
from .errors import RouteError

__all__ = ["TargetError", "build_parser", "load_app", "main"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

OPTION_HELP = {
    "max_pipelined_requests": "requests queued per connection before reading pauses",
    "graceful_timeout": "seconds a shutdown waits for requests in flight",
    "max_header_size": "bytes of request line and headers, beyond: 431",
    "max_url_length": "bytes of request target, beyond: 414",
    "max_body_size": "bytes of request body, beyond: 413",
    "header_timeout": "seconds from a request's first byte to its last header, beyond: 408",
    "body_timeout": "longest silence inside a request body, beyond: 408",
    "keep_alive_timeout": "seconds an idle connection is kept open",
    "max_connections": "open connections, beyond: 503 and close",
    "timing": "time requests and handlers (connections are always timed)",
    "access_log": "log one line per response to the cyclehttp.access logger (stdout)",
    "metrics_path": "serve the Prometheus metrics page on this path, e.g. /metrics",
}


class TargetError(Exception):
    """The ``module:attr`` target cannot be turned into an App; the message says why."""


def load_app(target: str, *, factory: bool = False, app_dir: str = ".") -> App:
    """Import ``module:attr`` and return the App it names.

    ``attr`` may be an ``App``, a list of ``(method, path, target)`` routes, or
    with ``factory=True`` a callable returning either.
    """
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path or ":" in attr_path:
        raise TargetError(f"target {target!r} must be of the form 'module:attribute', e.g. 'app:app'")
    if app_dir:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise TargetError(f"cannot import module {module_name!r}: {exc}") from None
        raise TargetError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from None
    except Exception as exc:
        raise TargetError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from None
    value: object = module
    for part in attr_path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if factory:
        if not callable(value):
            raise TargetError(f"{target!r} is not callable; drop --factory or name a function")
        try:
            value = value()
        except Exception as exc:
            raise TargetError(f"factory {target!r} raised {type(exc).__name__}: {exc}") from None
    return _as_app(value, target, factory)


def _as_app(value: object, target: str, factory: bool) -> App:
    if isinstance(value, App):
        return value
    if isinstance(value, (list, tuple)):
        try:
            return App(value)
        except (RouteError, TypeError) as exc:
            raise TargetError(f"{target!r}: bad route list: {exc}") from None
    if callable(value) and not factory:
        raise TargetError(f"{target!r} is a callable, not an App; pass --factory to call it")
    raise TargetError(
        f"{target!r} is a {type(value).__name__}, not an App or a list of (method, path, target) routes"
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535, got {port}")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value}")
    return value


def _path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected a path starting with '/', e.g. /metrics, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyclehttp",
        description="Serve a cyclehttp app: cyclehttp module:attr. "
        "Look at a running server's figures: cyclehttp stats URL (see cyclehttp stats --help).",
    )
    parser.add_argument(
        "target",
        metavar="module:attr",
        help="the App (or list of routes) to serve, e.g. examples.hello:routes",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port to bind (default: 8000)")
    parser.add_argument("--factory", action="store_true", help="call module:attr to get the App")
    parser.add_argument("--app-dir", default=".", help="directory added to sys.path first (default: .)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default: info)")
    limits = parser.add_argument_group("limits and timeouts")
    observing = parser.add_argument_group("metrics and logs")
    for field in fields(Config):
        default = getattr(DEFAULTS, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            observing.add_argument(
                flag if not default else "--no-" + flag[2:],
                dest=field.name,
                action="store_false" if default else "store_true",
                help=f"do not {OPTION_HELP[field.name]}" if default else OPTION_HELP[field.name],
            )
            continue
        if default is None:
            observing.add_argument(flag, type=_path, metavar="PATH", help=OPTION_HELP[field.name])
            continue
        is_seconds = isinstance(default, float)
        limits.add_argument(
            "--" + field.name.replace("_", "-"),
            type=_seconds if is_seconds else _positive_int,
            default=default,
            metavar="SECONDS" if is_seconds else "N",
            help=f"{OPTION_HELP[field.name]} (default: {default:g})"
            if is_seconds
            else f"{OPTION_HELP[field.name]} (default: {default})",
        )
    parser.add_argument("--version", action="version", version=f"cyclehttp {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["stats"]:
        from . import statsview

        return statsview.main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if args.access_log:
        _log_access_to_stdout()
    try:
        app = load_app(args.target, factory=args.factory, app_dir=args.app_dir)
    except TargetError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    try:
        config = Config(**{field.name: getattr(args, field.name) for field in fields(Config)})
    except ValueError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    import uvloop

    from .server import Server

    try:
        uvloop.run(Server(app, config).serve(args.host, args.port))
    except RouteError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cyclehttp: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _log_access_to_stdout() -> None:
    """Access lines go to stdout as they are, without the level and logger name of other logs."""
    access = logging.getLogger(ACCESS_LOGGER)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False

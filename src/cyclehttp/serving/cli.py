"""The ``cyclehttp`` command: ``cyclehttp module:attr [options]``, ``cyclehttp routes module:attr``
and ``cyclehttp stats URL``.

Mistakes in what the user typed (a bad target, a bad option, a bad
``CYCLEHTTP_*`` variable) print one line starting with ``cyclehttp: error:``
and exit with status 2, like argparse. Every option can also be set in the
environment (``cyclehttp.envvars``): command line > environment > default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from dataclasses import fields

from cyclehttp.app.application import App
from cyclehttp.clock.accesslog import ACCESS_LOGGER
from cyclehttp.config import DEFAULTS, Config
from cyclehttp.errors import RouteError
from cyclehttp.serving.envvars import TARGET_VARIABLE, add_env_help, apply_environment
from cyclehttp.serving.listeners import ListenError, close_listeners, open_listeners
from cyclehttp.serving.options import number
from cyclehttp.serving.workers import BALANCES, DEFAULT_BALANCE
from cyclehttp.version import BUILD, __version__

__all__ = ["TargetError", "build_parser", "build_routes_parser", "load_app", "main", "serve_sockets"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

OPTION_HELP = {
    "max_pipelined_requests": "requests queued per connection before reading pauses",
    "graceful_timeout": "seconds a shutdown waits for requests in flight",
    "max_header_size": "bytes of request line and headers, beyond: 431",
    "max_url_length": "bytes of request target, beyond: 414",
    "max_body_size": "bytes of request body, beyond: 413",
    "max_form_fields": "fields of one form (request.form()), beyond: 413",
    "max_form_parts": "parts of one multipart form, files included, beyond: 413",
    "max_form_field_size": "bytes of one non-file form field, beyond: 413",
    "max_query_pairs": "query-string pairs request.query reads, beyond: 400",
    "max_cookie_pairs": "Cookie header pairs request.cookies reads, the rest ignored",
    "header_timeout": "seconds from a request's first byte to its last header, beyond: 408",
    "body_timeout": "longest silence inside a request body, beyond: 408",
    "keep_alive_timeout": "seconds an idle connection is kept open",
    "send_timeout": "seconds a client may leave an answer unread before its connection is aborted",
    "max_connections": "open connections, beyond: 503 and close",
    "timing": "time requests and handlers (connections are always timed)",
    "access_log": "log one line per response to the cyclehttp.access logger (stdout)",
    "metrics_path": "serve the Prometheus metrics page on this path, e.g. /metrics",
    "proxy_headers": "believe X-Forwarded-For/-Proto/-Host and Forwarded from --forwarded-allow-ips peers "
    "(request.client, scheme, host and the access log show the client)",
    "forwarded_allow_ips": "comma-separated proxy addresses and CIDR networks whose proxy headers "
    "are believed; 'unix' trusts Unix-socket peers, '*' any peer",
    "debug": "show the traceback in a 500's body (local development only, never in production)",
}

# Options shown under "behind a reverse proxy" in --help (the others by their kind).
PROXY_OPTIONS = frozenset({"proxy_headers", "forwarded_allow_ips"})


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


_port = number(int, minimum=0, maximum=65535, what="a number", name="port")
_positive_int = number(int, minimum=1)
_fd = number(int, minimum=0, what="a file descriptor number")
_seconds = number(float, minimum=0, what="seconds", allow_inf=True)  # inf: a timeout that never fires


def _workers(text: str) -> int:
    """``--workers``: a count >= 1, or ``0``/``auto`` for one per CPU."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of processes or 'auto' (one per CPU), got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a number of processes >= 1, or 0/auto for one per CPU, got {value}"
        )
    return value if value > 0 else os.cpu_count() or 1


def _path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected a path starting with '/', e.g. /metrics, got {text!r}")
    return text


class _ReloadDirs(argparse.Action):
    """``--reload-dir``, repeatable: the command line's directories replace the environment's."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        dirs = list(current) if isinstance(current, list) and current is not self.default else []
        dirs.append(str(values))
        setattr(namespace, self.dest, dirs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyclehttp",
        description="Serve a cyclehttp app: cyclehttp module:attr. "
        "List its compiled routes: cyclehttp routes module:attr. "
        "Look at a running server's figures: cyclehttp stats URL (see cyclehttp stats --help).",
        epilog=ENV_EPILOG,
    )
    parser.add_argument(
        "target",
        metavar="module:attr",
        nargs="?",
        help="the App (or list of routes) to serve, e.g. examples.hello:routes",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port to bind (default: 8000)")
    parser.add_argument(
        "--uds",
        metavar="PATH",
        help="listen on a Unix socket at PATH instead of --host/--port (mode 0660; "
        "a stale socket file is replaced, anything else there is refused)",
    )
    parser.add_argument(
        "--fd",
        type=_fd,
        metavar="N",
        help="serve on the inherited listening socket with file descriptor N (TCP or Unix) "
        "instead of --host/--port. systemd socket activation (LISTEN_FDS) is used automatically",
    )
    parser.add_argument(
        "--backlog",
        type=_positive_int,
        default=2048,
        metavar="N",
        help="listen queue length of the socket cyclehttp binds (default: 2048). An inherited "
        "socket (--fd, systemd) was already listening, but the event loop calls listen(N) on it "
        "again, so N becomes its queue length too",
    )
    parser.add_argument("--factory", action="store_true", help="call module:attr to get the App")
    parser.add_argument("--app-dir", default=".", help="directory added to sys.path first (default: .)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default: info)")
    processes = parser.add_argument_group("worker processes")
    processes.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serve with N worker processes under a supervisor that restarts them; "
        "0 or 'auto': one per CPU (default: 1, a single process and no supervisor)",
    )
    processes.add_argument(
        "--balance",
        choices=BALANCES,
        default=None,
        help="how connections reach the workers: 'reuseport', one SO_REUSEPORT socket per worker "
        "(the kernel spreads connections evenly); 'shared', one socket all workers accept on "
        f"(default: {DEFAULT_BALANCE} for --host/--port, shared for --uds, --fd and systemd)",
    )
    development = parser.add_argument_group("development")
    development.add_argument(
        "--reload",
        action="store_true",
        help="restart the server when a .py file in --app-dir changes (development only: the "
        "socket stays open, the server runs in a child process that is replaced; not with --workers)",
    )
    development.add_argument(
        "--reload-dir",
        action=_ReloadDirs,
        metavar="DIR",
        help="with --reload, watch DIR instead of --app-dir (repeatable; in the environment, "
        "several directories separated by ':')",
    )
    development.add_argument(
        "--reload-poll",
        action="store_true",
        help="with --reload, look for changes by scanning file times every 0.5 s instead of using "
        "watchfiles (network or container mounts where inotify misses changes)",
    )
    limits = parser.add_argument_group("limits and timeouts")
    observing = parser.add_argument_group("metrics and logs")
    proxy = parser.add_argument_group("behind a reverse proxy")
    for field in fields(Config):
        default = getattr(DEFAULTS, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            (proxy if field.name in PROXY_OPTIONS else observing).add_argument(
                flag if not default else "--no-" + flag[2:],
                dest=field.name,
                action="store_false" if default else "store_true",
                help=f"do not {OPTION_HELP[field.name]}" if default else OPTION_HELP[field.name],
            )
            continue
        if default is None:
            observing.add_argument(flag, type=_path, metavar="PATH", help=OPTION_HELP[field.name])
            continue
        if isinstance(default, str):  # checked by Config: a bad value exits 2 with its message
            (proxy if field.name in PROXY_OPTIONS else observing).add_argument(
                flag, default=default, metavar="LIST", help=f"{OPTION_HELP[field.name]} (default: {default})"
            )
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
    parser.add_argument("--version", action="version", version=f"cyclehttp {__version__} ({BUILD})")
    add_env_help(parser)
    return parser


def build_routes_parser() -> argparse.ArgumentParser:
    """``cyclehttp routes module:attr``: the options that decide which routes an app serves."""
    parser = argparse.ArgumentParser(
        prog="cyclehttp routes",
        description="Print the compiled route table of a cyclehttp app: each target index, its "
        "methods and path, and what answers (a static buffer, with its size and variants, or a "
        "handler), then the built-in answers (metrics page, 405s, 404).",
        epilog=ENV_EPILOG,
    )
    parser.add_argument(
        "target",
        metavar="module:attr",
        nargs="?",
        help="the App (or list of routes), e.g. examples.hello:routes",
    )
    parser.add_argument("--factory", action="store_true", help="call module:attr to get the App")
    parser.add_argument("--app-dir", default=".", help="directory added to sys.path first (default: .)")
    parser.add_argument("--metrics-path", type=_path, metavar="PATH", help=OPTION_HELP["metrics_path"])
    add_env_help(parser)
    return parser


ENV_EPILOG = (
    "Every option can also come from the environment: CYCLEHTTP_ and the option's long name "
    "upper-cased with dashes as underscores (--max-body-size: CYCLEHTTP_MAX_BODY_SIZE), "
    f"module:attr from {TARGET_VARIABLE}. The command line wins over the environment. Flags take "
    "1/0, true/false, yes/no or on/off. An empty variable counts as unset."
)


def _parse(parser: argparse.ArgumentParser, arguments: Sequence[str]) -> argparse.Namespace:
    """Parse ``arguments`` over the ``CYCLEHTTP_*`` variables; a bad value or no target exits 2."""
    apply_environment(parser, os.environ, warn_typos=parser.prog == "cyclehttp")
    args = parser.parse_args(arguments)
    if args.target is None:
        parser.error(f"the following arguments are required: module:attr (or set {TARGET_VARIABLE})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["stats"]:
        from cyclehttp.serving import stats_command

        return stats_command.main(arguments[1:])
    if arguments[:1] == ["routes"]:
        return _routes(arguments[1:])
    parser = build_parser()
    args = _parse(parser, arguments)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if args.reload:
        return _reload(parser, args)
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
    reuse_port = args.workers > 1 and _reuse_port(args)
    socks = _listeners(args, reuse_port=reuse_port)
    if isinstance(socks, int):
        return socks
    try:
        if args.workers > 1:
            return _serve_workers(app, config, socks, args, reuse_port)
        return serve_sockets(app, config, socks, backlog=args.backlog)
    finally:
        close_listeners(socks)


def _reload(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--reload``: this process keeps the socket and runs the server in a child it restarts
    when a watched file changes (``cyclehttp.reload``). The app is imported only in the child."""
    from cyclehttp.serving.reload import Reloader, child_arguments, child_environment

    if args.workers > 1:
        print(
            "cyclehttp: error: --reload and --workers cannot be used together: --reload runs one "
            "server process for development; drop one of them",
            file=sys.stderr,
        )
        return 2
    dirs = args.reload_dir or [args.app_dir]
    if isinstance(dirs, str):  # from CYCLEHTTP_RELOAD_DIR
        dirs = [d for d in dirs.split(os.pathsep) if d]
    for directory in dirs:
        if not os.path.isdir(directory):
            print(f"cyclehttp: error: --reload-dir {directory!r} is not a directory", file=sys.stderr)
            return 2
    if ":" not in args.target:  # the rest of load_app's checks happen in the child
        print(
            f"cyclehttp: error: target {args.target!r} must be of the form 'module:attribute'",
            file=sys.stderr,
        )
        return 2
    try:
        config = Config(**{field.name: getattr(args, field.name) for field in fields(Config)})
    except ValueError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    socks = _listeners(args)
    if isinstance(socks, int):
        return socks
    try:
        if len(socks) != 1:
            print(
                f"cyclehttp: error: --reload serves on one socket, but {_where(args)} gave {len(socks)}: "
                "name one address, e.g. --host 127.0.0.1",
                file=sys.stderr,
            )
            return 2
        command = [sys.executable, "-m", "cyclehttp", *child_arguments(parser, args, socks[0].fileno())]
        reloader = Reloader(
            command,
            socks[0],
            dirs,
            env=child_environment(parser, os.environ),
            graceful_timeout=config.graceful_timeout,
            poll=args.reload_poll,
        )
        return reloader.run()
    finally:
        close_listeners(socks)


def _routes(arguments: Sequence[str]) -> int:
    """``cyclehttp routes``: print the route table; a bad target is an error, exit 2."""
    from cyclehttp.app.route_table import format_routes

    args = _parse(build_routes_parser(), arguments)
    try:
        app = load_app(args.target, factory=args.factory, app_dir=args.app_dir)
        table = format_routes(app, metrics_path=args.metrics_path, title=f"routes of {args.target}")
    except (TargetError, RouteError) as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(table)
    return 0


def _reuse_port(args: argparse.Namespace) -> bool:
    """Whether workers get one SO_REUSEPORT socket each (only for a TCP socket cyclehttp binds)."""
    if args.balance is not None:
        return bool(args.balance == "reuseport")  # with --uds/--fd: open_listeners says why not
    bound_here = args.uds is None and args.fd is None and "LISTEN_FDS" not in os.environ
    return DEFAULT_BALANCE == "reuseport" and bound_here


def _serve_workers(
    app: App, config: Config, socks: Sequence[socket.socket], args: argparse.Namespace, reuse_port: bool
) -> int:
    """``--workers N`` with N > 1: a supervisor forks the workers (cyclehttp.workers)."""
    from cyclehttp.serving.workers import run_workers

    try:
        return run_workers(
            app,
            config,
            socks,
            workers=args.workers,
            reuse_port=reuse_port,
            host=args.host,
            backlog=args.backlog,
        )
    except RouteError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cyclehttp: error: cannot listen on {_where(args)} for every worker: {exc}", file=sys.stderr)
        return 1


def serve_sockets(app: App, config: Config, socks: Sequence[socket.socket], *, backlog: int = 2048) -> int:
    """Serve ``app`` on listening ``socks`` on uvloop until SIGINT/SIGTERM; returns the exit status.

    The sockets stay open: whoever opened them closes them. This is the whole of serving
    once the listeners exist, so a worker process given its supervisor's sockets calls it too.
    """
    import uvloop

    from cyclehttp.serving.server import Server, StartupError

    try:
        uvloop.run(Server(app, config).serve(socks=socks, backlog=backlog))
    except RouteError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:  # the hook's traceback is logged on cyclehttp.error already
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cyclehttp: error: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _listeners(args: argparse.Namespace, *, reuse_port: bool = False) -> list[socket.socket] | int:
    """The listening sockets the options name, or the exit status after saying why there are none."""
    try:
        return open_listeners(
            host=args.host,
            port=args.port,
            uds=args.uds,
            fd=args.fd,
            backlog=args.backlog,
            reuse_port=reuse_port,
        )
    except ListenError as exc:
        print(f"cyclehttp: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cyclehttp: error: cannot listen on {_where(args)}: {exc}", file=sys.stderr)
        return 1


def _where(args: argparse.Namespace) -> str:
    """What the user asked to listen on, for an error message."""
    if args.fd is not None:
        return f"fd {args.fd}"
    if args.uds is not None:
        return f"unix:{args.uds}"
    return f"{args.host}:{args.port}"


def _log_access_to_stdout() -> None:
    """Access lines go to stdout as they are, without the level and logger name of other logs."""
    access = logging.getLogger(ACCESS_LOGGER)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False

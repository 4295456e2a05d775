"""Run cyclehttp under gunicorn's arbiter: ``gunicorn -k cyclehttp.gunicorn_worker.CycleWorker mod:attr``.

gunicorn owns the processes (forking, restarting dead workers, killing hung
ones, ``--max-requests`` recycling, ``HUP``/``TTIN``/``TTOU``, binding the
listeners); each worker process runs one uvloop loop with one cyclehttp
``Server`` per listening socket gunicorn bound (TCP or Unix), and the app's
startup and shutdown hooks once around them all (a startup hook that raises
is a boot error: the arbiter stops). gunicorn is
not a dependency of cyclehttp: only this module imports it.

The target is loaded by ``cyclehttp.cli.load_app``, not by gunicorn's WSGI
loader (which insists on a callable): it may be an ``App`` or a list of
routes; ``module:factory()`` (empty parentheses only) calls a factory.
gunicorn's ``--chdir`` and ``--pythonpath`` are applied by gunicorn before
the import. A target that cannot be loaded is an ``AppImportError``: the
worker exits with ``APP_LOAD_ERROR`` and the arbiter stops, with cyclehttp's
message on stderr, instead of respawning workers forever. ``--preload``
does not work (gunicorn's preloader rejects anything not callable) and TLS
options (``--certfile``) are refused: cyclehttp speaks plain HTTP.

Settings mapped to ``Config`` (the others keep cyclehttp's defaults):

==============================  ==========================  ===============================================
gunicorn                        ``Config``                  notes
==============================  ==========================  ===============================================
``--keep-alive`` (2)            ``keep_alive_timeout``      gunicorn's 2 s default wins over cyclehttp's
                                                            75 s: pass ``--keep-alive 75`` behind a proxy.
                                                            0 (gunicorn: no keep-alive) becomes 1 s, the
                                                            shortest idle timeout cyclehttp checks.
``--graceful-timeout`` (30)     ``graceful_timeout``        also what SIGTERM waits for requests in flight.
``--limit-request-line`` (4094) ``max_url_length``          cyclehttp bounds the target, not the whole
                                                            line; 0 (unlimited) means "bounded only by
                                                            ``max_header_size``".
``--limit-request-field_size``  ``max_header_size``         cyclehttp bounds the whole head, not each
(8190)                                                      field: the head limit is the larger of
                                                            16 KiB and this value (0: 16 KiB).
``--worker-connections`` (1000) ``max_connections``         per listening socket; more get 503 and close.
``--access-logfile``            ``access_log``              lines (cyclehttp's combined format + response
                                                            time, not ``--access-logformat``) go to the
                                                            handlers of gunicorn's access log.
``--backlog`` (2048)            ``Server.start(backlog=)``  the listen backlog.
==============================  ==========================  ===============================================

Other gunicorn options that matter: ``--workers``, ``--timeout`` (the
heartbeat), ``--max-requests``/``--max-requests-jitter``, ``--bind``,
``--reuse-port``, ``--error-logfile``/``--log-level`` (the ``cyclehttp``
loggers write through gunicorn's error-log handlers, so ``SIGUSR1``
reopens both logs), ``--user``/``--group``, the server hooks. ``--threads``
is ignored (one event loop per worker).

Signals (sent by the arbiter, or by hand to a worker):

* ``TERM``: graceful. Stop accepting, finish requests in flight (their
  responses carry ``Connection: close``), close idle keep-alive
  connections, abort what is left after ``--graceful-timeout``, exit 0.
* ``QUIT``, ``INT``: fast. Run the ``worker_int`` hook, abort every
  connection, exit 0. Also during a graceful drain.
* ``USR1``: reopen log files. ``WINCH``: ignored.
* ``ABRT`` (sent by the arbiter to a worker whose heartbeat went stale):
  log the stack where the loop is blocked, run the ``worker_abort`` hook,
  exit 1 at once.

``TERM``/``QUIT``/``INT``/``USR1``/``WINCH`` are handled by
``loop.add_signal_handler``: the handler runs as an ordinary loop callback,
between two protocol callbacks rather than in the middle of one, and it
wakes the worker at once, so a drain starts without waiting for the next
heartbeat tick. gunicorn's base handlers would instead run at an arbitrary
bytecode and ``sys.exit()`` there (QUIT), skipping the drain. ``ABRT`` is the
exception: the arbiter sends it because the loop is stuck, when no loop
callback can run, so it stays a plain ``signal.signal`` handler, which calls
``os._exit``: a ``SystemExit`` raised inside a stuck handler would be caught.

The heartbeat is a task on the same loop, so a loop blocked by a handler
stops it and gunicorn's ``--timeout`` kills the worker, as it should; a loop
that is merely busy serving keeps ticking. The same tick polls ``alive``
(gunicorn's ``--reload`` thread clears it too), notices a new
parent (the arbiter died: exit) and ``--max-requests`` (counted from the
servers' own statistics: drain and exit, and the arbiter starts a
replacement; requests already accepted on open connections may take the
count a little past the limit, as with uvicorn's worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import traceback
from types import FrameType
from typing import Any, Final, NoReturn

import uvloop
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.errors import AppImportError  # type: ignore[import-untyped]
from gunicorn.workers.base import Worker  # type: ignore[import-untyped]

from cyclehttp.app.application import App
from cyclehttp.app.lifespan import Lifespan
from cyclehttp.clock.accesslog import ACCESS_LOGGER
from cyclehttp.config import DEFAULT_MAX_HEADER_SIZE, Config
from cyclehttp.errors import StartupError
from cyclehttp.serving.cli import TargetError, load_app
from cyclehttp.serving.server import Server

__all__ = ["CycleWorker", "config_from_gunicorn"]

# How often the worker ticks when --max-requests is on: the limit is noticed
# within this many seconds (a snapshot of the statistics costs ~50 us).
MAX_REQUESTS_POLL: Final = 0.1

# The longest gap between two heartbeats, whatever --timeout is; the tick
# also checks the parent pid.
MAX_HEARTBEAT_INTERVAL: Final = 1.0

# cyclehttp cannot turn keep-alive off; gunicorn's --keep-alive 0 gets the
# shortest idle timeout the once-a-second timeout check honours.
SHORTEST_KEEP_ALIVE: Final = 1.0


def config_from_gunicorn(cfg: Any, *, access_log: bool = False) -> Config:
    """The ``Config`` that gunicorn's settings ``cfg`` ask for (the table in the module docstring)."""
    keep_alive = float(cfg.keepalive) if cfg.keepalive > 0 else SHORTEST_KEEP_ALIVE
    field_size = int(cfg.limit_request_field_size)
    max_header_size = max(DEFAULT_MAX_HEADER_SIZE, field_size)
    request_line = int(cfg.limit_request_line)
    max_url_length = request_line if request_line > 0 else max_header_size
    return Config(
        keep_alive_timeout=keep_alive,
        graceful_timeout=float(cfg.graceful_timeout),
        max_url_length=max_url_length,
        max_header_size=max_header_size,
        max_connections=int(cfg.worker_connections),
        access_log=access_log,
    )


class CycleWorker(Worker):  # type: ignore[misc]  # gunicorn is untyped: Worker is Any to mypy
    """A gunicorn worker process serving a cyclehttp app on uvloop.

    ``gunicorn -k cyclehttp.gunicorn_worker.CycleWorker examples.hello:routes``
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Runs in the arbiter before the fork: nothing process-wide here.
        super().__init__(*args, **kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.cycle_app: App | None = None
        self.servers: list[Server] = []
        self._lifespan: Lifespan | None = None
        self._stop: asyncio.Event | None = None
        self._fast_exit = False

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Warn, in the arbiter at start-up, about settings this worker does not use."""
        if cfg.threads > 1:
            log.warning("cyclehttp: --threads is ignored: each worker runs one event loop")

    # -- process set-up (after the fork) -------------------------------------

    def init_process(self) -> None:
        """Create the loop first: ``init_signals`` (called by the base) registers on it."""
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._stop = asyncio.Event()
        self._route_logs()
        super().init_process()

    def _route_logs(self) -> None:
        """Send cyclehttp's loggers to gunicorn's handlers (files, stdout, syslog; SIGUSR1 reopens them)."""
        error_log = self.log.error_log
        cyclehttp_log = logging.getLogger("cyclehttp")
        cyclehttp_log.handlers = list(error_log.handlers)
        cyclehttp_log.setLevel(error_log.level)
        cyclehttp_log.propagate = False
        access = logging.getLogger(ACCESS_LOGGER)
        access.handlers = list(self.log.access_log.handlers)
        access.setLevel(logging.INFO)
        access.propagate = False

    def init_signals(self) -> None:
        """Handle the arbiter's signals on the loop (the module docstring says why)."""
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        loop = self.loop
        assert loop is not None
        loop.add_signal_handler(signal.SIGTERM, self._on_graceful_signal)
        loop.add_signal_handler(signal.SIGQUIT, self._on_fast_signal)
        loop.add_signal_handler(signal.SIGINT, self._on_fast_signal)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        loop.add_signal_handler(signal.SIGWINCH, self.log.debug, "worker: SIGWINCH ignored.")
        # Sent because the loop is stuck: a loop callback would never run.
        signal.signal(signal.SIGABRT, self.handle_abort)

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """SIGABRT: the arbiter saw no heartbeat for ``--timeout`` seconds, so the loop is blocked.

        Log where it is blocked, run the ``worker_abort`` hook and exit at
        once. gunicorn's base handler raises ``SystemExit`` instead, but that
        lands in the code that blocks the loop, typically a request handler,
        where the protocol catches it (closing that one connection) and the
        worker would live on with ``alive`` False.
        """
        self.alive = False
        try:
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)\n"
            self.log.error("cyclehttp: the event loop was blocked past --timeout, here:\n%s", stack.rstrip())
            self.cfg.worker_abort(self)
        finally:
            logging.shutdown()  # flush the log files: os._exit does not
            os._exit(1)

    def load_wsgi(self) -> None:
        """Load the cyclehttp app (gunicorn calls this from ``init_process``).

        A failure raises ``AppImportError``: the arbiter prints its message
        to stderr and exits with ``APP_LOAD_ERROR`` rather than respawning.
        """
        try:
            self.cycle_app = self._load_app()
        except TargetError as exc:
            raise AppImportError(f"cyclehttp: error: {exc}") from None
        self.wsgi = self.cycle_app  # what gunicorn's hooks expect to find

    def _load_app(self) -> App:
        target: str | None = getattr(self.app, "app_uri", None)
        if target is None:
            # An embedding BaseApplication whose load() returns the App (or routes).
            value = self.app.wsgi()
            if isinstance(value, App):
                return value
            if isinstance(value, (list, tuple)):
                return App(value)
            raise TargetError(f"the application's load() returned a {type(value).__name__}, not an App")
        if self.cfg.paste:
            raise TargetError("--paste is not supported: name the app as module:attr")
        factory = target.endswith("()")
        if factory:
            target = target[:-2]
        return load_app(target, factory=factory, app_dir=self.cfg.chdir)

    # -- signal handlers (loop callbacks) ------------------------------------

    def _on_graceful_signal(self) -> None:
        self.handle_exit(signal.SIGTERM, None)  # the base handler: alive = False
        self._wake()

    def _on_fast_signal(self) -> None:
        self.alive = False
        if not self._fast_exit:
            self._fast_exit = True
            self.cfg.worker_int(self)
        self._abort_connections()  # also ends a graceful drain already under way
        self._wake()

    def _wake(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _abort_connections(self) -> None:
        # Server.shutdown(0) aborts too, but a drain already under way keeps its deadline.
        for server in self.servers:
            for connection in list(server.state.connections):
                connection.abort()

    # -- the main loop ---------------------------------------------------------

    def run(self) -> None:
        """Serve until a signal, a new parent or ``--max-requests`` says stop, then drain."""
        loop = self.loop
        assert loop is not None
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        if not await self._start_servers():
            await self._stop_hooks()
            self.log.info("cyclehttp worker %s stopped during startup: nothing was served", self.pid)
            return
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            assert self._stop is not None
            await self._stop.wait()
            timeout = 0.0 if self._fast_exit else float(self.cfg.graceful_timeout)
            await asyncio.gather(*(server.shutdown(timeout) for server in self.servers))
            await self._stop_hooks()
        finally:
            heartbeat.cancel()
        self.log.info("cyclehttp worker %s stopped: %d requests served", self.pid, self.requests_served())

    async def _start_servers(self) -> bool:
        """The app's startup hooks (once per worker), then one ``Server`` per listener gunicorn bound;
        a failure stops gunicorn (``WORKER_BOOT_ERROR``).

        False when a stop signal came during the startup hooks: no later hook started (the ones
        that ran are undone, or their shutdown hooks are left to ``_stop_hooks``) and nothing
        listens."""
        if self.cfg.is_ssl:
            self._boot_error("TLS options (--certfile/--keyfile) are not supported; terminate TLS in front")
        assert self.cycle_app is not None
        lifespan = self.cycle_app.lifespan()
        try:
            if not await lifespan.start(lambda: not self.alive):  # the hook's traceback is logged already
                return False
        except StartupError as exc:
            self._boot_error(str(exc))
        self._lifespan = lifespan
        if not self.alive:  # the signal came during the last startup hook
            return False
        config = config_from_gunicorn(self.cfg, access_log=self._access_log_enabled())
        for listener in self.sockets:
            server = Server(self.cycle_app, config, run_hooks=False)
            try:
                await server.start(sock=getattr(listener, "sock", listener), backlog=self.cfg.backlog)
            except Exception as exc:
                for started in self.servers:
                    await started.shutdown(0)
                await self._stop_hooks()
                self._boot_error(f"cannot serve on {listener}: {type(exc).__name__}: {exc}")
            self.servers.append(server)
        return True

    async def _stop_hooks(self) -> None:
        """The app's shutdown hooks, after every server of this worker has drained."""
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.stop()

    def _boot_error(self, message: str) -> NoReturn:
        """Log to gunicorn's error log and exit so that the arbiter halts ("Worker failed to boot")."""
        self.log.error("cyclehttp: error: %s", message)
        sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _access_log_enabled(self) -> bool:
        enabled = getattr(self.log, "access_log_enabled", None)  # gunicorn >= 23
        return bool(self.cfg.accesslog) if enabled is None else bool(enabled)

    def heartbeat_interval(self) -> float:
        """Seconds between ticks; ``self.timeout`` is already half of gunicorn's ``--timeout``."""
        interval = MAX_HEARTBEAT_INTERVAL
        if self.timeout > 0:
            interval = min(interval, self.timeout / 2)
        if self.max_requests < sys.maxsize:
            interval = min(interval, MAX_REQUESTS_POLL)
        return interval

    async def _heartbeat(self) -> None:
        """Tell the arbiter this worker lives, and decide when it should stop.

        ``alive`` is polled, not only set by our signal handlers: gunicorn's
        reloader thread (``--reload``) and hooks clear it too.
        """
        interval = self.heartbeat_interval()
        while True:
            self.notify()
            if self.alive and self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                self.alive = False
            elif self.alive and self._max_requests_reached():
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if not self.alive:
                self._wake()
            await asyncio.sleep(interval)

    def _max_requests_reached(self) -> bool:
        limit = int(self.max_requests)
        return limit < sys.maxsize and self.requests_served() >= limit

    def requests_served(self) -> int:
        """Requests answered by this worker, over all its listeners (also kept in gunicorn's ``nr``)."""
        self.nr = sum(server.stats.snapshot().requests for server in self.servers)
        return int(self.nr)

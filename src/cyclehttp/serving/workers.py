"""``--workers N``: a supervisor process that forks N workers serving the same sockets.

Theory of operation:

* The CLI loads the app and opens the listeners first, in the supervisor, so a
  bad target or a busy port fails once, with exit status 2 or 1, before any
  worker exists.
* Workers are made with ``fork()`` *after* binding and loading and *before*
  any event loop exists in the supervisor: each child inherits the listening
  sockets and the imported app (no second import, copy-on-write memory), and
  builds its own uvloop loop from nothing. The supervisor never runs a loop
  and never starts a thread, which is what makes fork safe here. (``spawn``
  would re-import the app in every worker and pass sockets by fd: slower to
  start and more code for no gain on Linux.)
* Balance: with ``reuseport`` (the default for TCP, chosen by measurement:
  see benchmarks/workers.py) the supervisor binds one SO_REUSEPORT socket per
  worker *index* and keeps them all open, so the kernel spreads connections
  evenly over the workers, and a connection queued on a worker that dies
  waits for its replacement instead of being reset. With ``shared`` every
  worker accepts on the same socket (the only choice for ``--uds``, ``--fd``
  and systemd sockets), and whichever worker wakes first wins.
* A worker that dies is restarted: at once the first time, then after
  0.5 s, 1 s, 2 s ... up to 10 s while workers of that slot keep dying within
  ``QUICK_DEATH`` seconds of starting (a crash loop must not burn the CPU).
  One log line says which worker, its pid and why (exit status or signal).
* SIGTERM or SIGINT to the supervisor: every worker gets SIGTERM and drains
  (requests in flight are answered, ``Config.graceful_timeout``); after
  ``graceful_timeout + STOP_GRACE`` seconds the rest are killed. A second
  signal kills them at once. Workers ignore SIGINT themselves: Ctrl-C in a
  terminal reaches the whole process group, and only the supervisor decides.
* Every worker runs the app's startup hooks before it serves and its
  shutdown hooks after its drain (``cyclehttp.lifecycle``); a startup hook
  that raises makes the worker exit with ``WORKER_BOOT_ERROR``, and the
  supervisor stops with status 1 instead of restarting it. A worker is a
  ``Server.serve`` (``announce=False``), which handles SIGTERM from before
  the startup hooks run: a stop that comes while they run lets them finish,
  serves nothing, and still runs the shutdown hooks.
* Workers die with the supervisor (``PR_SET_PDEATHSIG``: SIGTERM, so they
  drain) instead of serving on as orphans.
* Figures: the supervisor maps a :class:`~cyclehttp.sharedstats.SharedStats`
  region before forking; every worker publishes into its slot once a second
  and the metrics page merges them (see :mod:`cyclehttp.sharedstats`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NoReturn

from cyclehttp.clock.shared import SharedStats, WorkerSlot
from cyclehttp.config import Config
from cyclehttp.cycle.targets import HandlerTarget
from cyclehttp.serving.banner import listening_line
from cyclehttp.serving.listeners import close_listeners, open_listeners

if TYPE_CHECKING:
    from cyclehttp.app.application import App
    from cyclehttp.cycle.request import Request
    from cyclehttp.cycle.response import Response

__all__ = [
    "BALANCES",
    "DEFAULT_BALANCE",
    "MAX_BACKOFF",
    "QUICK_DEATH",
    "STOP_GRACE",
    "WORKER_BOOT_ERROR",
    "Supervisor",
    "restart_delay",
    "run_workers",
]

logger = logging.getLogger("cyclehttp.workers")

BALANCES: Final = ("reuseport", "shared")
"""How connections reach workers: one SO_REUSEPORT socket per worker, or one shared socket."""

DEFAULT_BALANCE: Final = "reuseport"
"""Measured with benchmarks/workers.py (figures in the README): see the module docstring."""

QUICK_DEATH: Final = 5.0
"""A worker dying sooner than this after its start counts towards the back-off."""

MAX_BACKOFF: Final = 10.0
"""Longest wait before restarting a worker that keeps dying."""

STOP_GRACE: Final = 5.0
"""Seconds beyond ``graceful_timeout`` the supervisor waits for draining workers before SIGKILL."""

WORKER_BOOT_ERROR: Final = 3
"""Exit status of a worker that could not start serving: the supervisor stops (as gunicorn does)."""

_SIGNALS: Final = (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG: Final = 1


def restart_delay(quick_deaths: int) -> float:
    """Seconds to wait before restarting a worker after its ``quick_deaths``-th death in a row
    within ``QUICK_DEATH`` of starting: 0, 0.5, 1, 2, 4, 8, then ``MAX_BACKOFF``."""
    if quick_deaths <= 1:
        return 0.0
    return min(MAX_BACKOFF, 0.5 * 2.0 ** (quick_deaths - 2))


def _why(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass(slots=True)
class _Worker:
    index: int
    socks: list[socket.socket]
    pid: int = 0
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


class Supervisor:
    """Forks and watches ``len(listeners)`` workers; ``listeners[i]`` are worker ``i``'s sockets.

    The supervisor serves nothing itself. ``run()`` blocks until every worker
    has stopped and returns the process's exit status.
    """

    def __init__(
        self,
        app: App,
        config: Config,
        listeners: Sequence[list[socket.socket]],
        *,
        backlog: int = 2048,
        shared: SharedStats | None = None,
    ) -> None:
        if not listeners:
            raise ValueError("a supervisor needs at least one worker")
        self.app = app
        self.config = config
        self.backlog = backlog
        self.shared = shared
        self.workers = [_Worker(i, list(socks)) for i, socks in enumerate(listeners)]
        self.pid = os.getpid()
        self._stopping = False
        self._status = 0

    # --- the supervisor -------------------------------------------------------

    def run(self) -> int:
        """Start the workers, restart the ones that die, stop them all on SIGTERM/SIGINT."""
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for worker in self.workers:
                self._start(worker)
            while not self._stopping:
                received = signal.sigtimedwait(_SIGNALS, self._next_wakeup())
                if received is not None and received.si_signo != signal.SIGCHLD:
                    logger.info(
                        "%s received: stopping %d workers", signal.Signals(received.si_signo).name,
                        len(self.workers),
                    )  # fmt: skip
                    self._stopping = True
                    break
                self._reap()
                self._restart_due()
            self._stop_all()
        finally:
            self._kill_all()  # only if something above raised with workers still running
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        return self._status

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        due = [w.restart_at - now for w in self.workers if w.restart_at is not None]
        return max(0.0, min([1.0, *due]))

    def _alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.pid]

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is not None:
                self._died(worker, status)

    def _died(self, worker: _Worker, status: int) -> None:
        pid, worker.pid = worker.pid, 0
        lived = time.monotonic() - worker.started
        if self._stopping:
            level = logging.INFO if os.waitstatus_to_exitcode(status) == 0 else logging.WARNING
            logger.log(level, "worker %d (pid %d) %s", worker.index, pid, _why(status))
            return
        if os.waitstatus_to_exitcode(status) == WORKER_BOOT_ERROR:
            logger.error(
                "worker %d (pid %d) could not start serving (see the error above); stopping the server",
                worker.index,
                pid,
            )
            self._status = 1
            self._stopping = True
            return
        worker.quick_deaths = worker.quick_deaths + 1 if lived < QUICK_DEATH else 1
        delay = restart_delay(worker.quick_deaths)
        worker.restart_at = time.monotonic() + delay
        when = (
            "restarting it now"
            if delay == 0
            else f"restarting it in {delay:g} s (it died within {QUICK_DEATH:g} s of starting "
            f"{worker.quick_deaths} times in a row)"
        )
        logger.error("worker %d (pid %d) %s after %.1f s; %s", worker.index, pid, _why(status), lived, when)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None and worker.restart_at <= now and not self._stopping:
                worker.restart_at = None
                self._start(worker)

    def _start(self, worker: _Worker) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:
            self._worker_main(worker)
        worker.pid = pid
        worker.started = time.monotonic()
        logger.debug("worker %d started (pid %d)", worker.index, pid)

    def _signal_all(self, signum: int) -> None:
        for worker in self._alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    def _stop_all(self) -> None:
        """SIGTERM every worker and wait for them to drain; SIGKILL at the deadline or a second signal."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.graceful_timeout + STOP_GRACE
        forced = False
        while self._alive():
            self._reap()
            if not self._alive():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning(
                    "%d workers still running %g s after SIGTERM; killing them",
                    len(self._alive()),
                    self.config.graceful_timeout + STOP_GRACE,
                )
                break
            received = signal.sigtimedwait(_SIGNALS, min(remaining, 0.5))
            if received is not None and received.si_signo != signal.SIGCHLD and not forced:
                logger.warning("second signal: killing the workers now")
                forced = True
                self._signal_all(signal.SIGKILL)
        self._kill_all()

    def _kill_all(self) -> None:
        """SIGKILL and reap every worker still running (never leave one behind)."""
        self._stopping = True
        self._signal_all(signal.SIGKILL)
        for worker in self._alive():
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(worker.pid, 0)
                self._died(worker, status)
            worker.pid = 0

    # --- a worker ---------------------------------------------------------------

    def _worker_main(self, worker: _Worker) -> NoReturn:
        """The forked child: serve ``worker.socks`` until SIGTERM, then exit (never return)."""
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            _die_with(self.pid)
            mine = {id(sock) for sock in worker.socks}
            for other in self.workers:
                for sock in other.socks:
                    if id(sock) not in mine:
                        sock.close()
            slot = WorkerSlot(self.shared, worker.index) if self.shared is not None else None
            import uvloop

            status = uvloop.run(_serve_worker(self.app, self.config, worker, self.backlog, slot))
        except BaseException:
            logger.exception("worker %d (pid %d) failed", worker.index, os.getpid())
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(status)


def _die_with(supervisor: int) -> None:
    """Ask Linux to SIGTERM this process when the supervisor dies (it then drains and exits)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor:  # it died before prctl took effect
        os._exit(0)


async def _serve_worker(
    app: App, config: Config, worker: _Worker, backlog: int, slot: WorkerSlot | None
) -> int:
    """A worker's life: ``Server.serve`` until SIGTERM (a second one aborts the connections).

    ``serve`` handles SIGTERM from before the startup hooks run, so a stop that comes while
    they run still ends with the shutdown hooks; it leaves SIGINT ignored, as ``_worker_main``
    set it. Returns the exit status: ``WORKER_BOOT_ERROR`` when the worker never served.
    """
    from cyclehttp.serving.server import Server, StartupError, summary

    server = Server(app, config)
    server.worker = slot
    logger.debug("worker %d (pid %d) starting", worker.index, os.getpid())
    try:
        await server.serve(socks=worker.socks, backlog=backlog, announce=False)
    except StartupError as exc:  # the hook's traceback is logged already
        logger.error("worker %d (pid %d) cannot serve: %s", worker.index, os.getpid(), exc)
        return WORKER_BOOT_ERROR
    except Exception:
        if server.started:
            raise  # a failure while serving or draining: _worker_main logs it, status 1
        logger.exception("worker %d (pid %d) cannot serve", worker.index, os.getpid())
        return WORKER_BOOT_ERROR
    logger.debug("worker %d (pid %d): %s", worker.index, os.getpid(), summary(server.stats.snapshot()))
    return 0


def _check_routes(app: App, config: Config) -> None:
    """Fail in the supervisor, before forking, on what would make every worker fail (RouteError)."""
    router = app.compile()
    metrics_path = config.merged_with_app(metrics_path=app.metrics_path, debug=app.debug).metrics_path
    if metrics_path is not None:

        def unused(request: Request) -> Response:  # pragma: no cover - never served
            raise AssertionError

        router.add_internal(metrics_path, HandlerTarget(unused))


def run_workers(
    app: App,
    config: Config,
    socks: Sequence[socket.socket],
    *,
    workers: int,
    reuse_port: bool = False,
    host: str = "127.0.0.1",
    backlog: int = 2048,
) -> int:
    """Serve ``app`` with ``workers`` processes on the listening ``socks``; returns the exit status.

    With ``reuse_port`` the ``socks`` (bound with SO_REUSEPORT) become worker
    0's, and the supervisor binds one more set on the same port for each other
    worker. The caller closes ``socks``; the extra sets are closed here.
    Raises ``RouteError`` (a route hides the metrics path) and ``OSError`` /
    ``ListenError`` (the extra sockets cannot be bound) before any worker starts.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _check_routes(app, config)
    listeners: list[list[socket.socket]] = [list(socks)]
    try:
        if reuse_port:
            tcp = [s for s in socks if s.family in (socket.AF_INET, socket.AF_INET6)]
            if not tcp:
                raise ValueError("reuse_port needs TCP sockets")
            port = int(tcp[0].getsockname()[1])
            listeners += [
                open_listeners(host=host, port=port, backlog=backlog, reuse_port=True)
                for _ in range(workers - 1)
            ]
        else:
            listeners *= workers
        shared = SharedStats(workers)
        try:
            balance = "one SO_REUSEPORT socket each" if reuse_port else "one shared socket"
            logger.info("%s", listening_line(socks, config, workers=workers, balance=balance))
            from cyclehttp.serving.server import summary

            status = Supervisor(app, config, listeners, backlog=backlog, shared=shared).run()
            merged = shared.merged()
            if merged is not None:
                logger.info("all workers: %s", summary(merged))
            return status
        finally:
            shared.close()
    finally:
        for extra in listeners[1:] if reuse_port else ():
            close_listeners(extra)

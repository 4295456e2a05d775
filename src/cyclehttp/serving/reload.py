"""``--reload``: restart the server when a ``.py`` file changes (for development only).

Theory of operation (the shape of uvicorn's reloader):

* The process the user started becomes a *reloader*. It opens the listening
  socket once (the CLI calls ``open_listeners``) and never serves: it runs the
  server in a child process, a fresh interpreter (``python -m cyclehttp ...
  --fd N``, the socket passed with ``pass_fds``). A fresh interpreter is the
  point: ``fork`` would keep the old modules, and reloading modules in place
  leaves stale references everywhere. Because the socket stays bound and
  listening across restarts, a client that connects mid-restart waits in the
  backlog instead of being refused.
* The child gets the reloader's options on its command line, rebuilt from the
  parsed namespace (so ``CYCLEHTTP_*`` variables and abbreviated options are
  resolved once, here); the variables that name options are removed from the
  child's environment so they cannot contradict it.
* A watcher reports changed ``.py`` files under the watched directories
  (``--app-dir``, or every ``--reload-dir``), skipping ``__pycache__``,
  hidden directories, virtualenvs, ``site-packages`` and ``node_modules``.
  ``watchfiles`` (inotify, the ``cyclehttp[reload]`` extra) when it is
  installed; otherwise, or with ``--reload-poll``, a scan of the files'
  mtimes every ``POLL_INTERVAL`` seconds. Both block between checks: the
  reloader sleeps, it never spins.
* On a change: SIGTERM to the child (it drains its requests in flight), a
  bounded wait (``RESTART_TIMEOUT``, then SIGKILL), and a new child.
* A child that exits by itself (a syntax error mid-edit, an import error, a
  crash) does not stop the reloader: its error is on stderr, the reloader
  says so and starts a new child at the next change, never before (no crash
  loop).
* SIGINT or SIGTERM to the reloader: SIGTERM to the child (it drains its
  requests in flight, ``graceful_timeout``), a wait of ``graceful_timeout +
  STOP_GRACE`` seconds, then SIGKILL; exit status 0. A second signal is
  passed on as a second SIGTERM, the child's own "force": it closes every
  connection at once and still runs its shutdown hooks; SIGKILL follows if
  it is not gone ``STOP_GRACE`` seconds later.
* The child ignores SIGINT. It is in the reloader's process group, so a
  terminal's Ctrl-C reaches both; if the child acted on it, the reloader's
  SIGTERM would be its *second* signal and Ctrl-C would drop the requests in
  flight instead of draining them. So only the reloader decides, as the
  ``--workers`` supervisor does for its workers (``cyclehttp.workers``). The
  child gets SIGINT ignored between fork and exec (``preexec_fn``): an ignored
  signal stays ignored across ``exec``, Python then installs no
  ``KeyboardInterrupt`` for it, and ``Server.serve`` leaves a SIGINT it finds
  ignored alone. The child stays in the terminal's foreground process group
  on purpose: a child in a group or session of its own could not read the
  terminal (``breakpoint()`` in a handler would stop it with SIGTTIN, or
  race the shell for input), would miss the terminal's hangup, and would
  need its own guard against outliving the reloader. (``preexec_fn`` is
  documented as unsafe with threads because arbitrary Python code may need
  a lock another thread held at the fork; this one only sets a signal's
  disposition (``sigaction``). The reloader's only other thread is the
  watcher's, in Rust, when ``watchfiles`` is used.)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Any, Final, Protocol

from cyclehttp.serving.envvars import env_name

__all__ = [
    "IGNORED_DIRS",
    "POLL_INTERVAL",
    "PollingWatcher",
    "Reloader",
    "Watcher",
    "child_arguments",
    "child_environment",
    "make_watcher",
    "watched_file",
]

logger = logging.getLogger("cyclehttp")

POLL_INTERVAL: Final = 0.5
"""Seconds between two scans of the polling watcher, and the longest a watcher blocks."""

RESTART_TIMEOUT: Final = 5.0
"""Longest wait, in seconds, for the old child to drain before a restart kills it: a
development server should not keep the new code waiting behind a long request."""

STOP_GRACE: Final = 1.0
"""Seconds past ``graceful_timeout`` the reloader waits for the child when it stops."""

IGNORED_DIRS: Final = frozenset({"__pycache__", "node_modules", "site-packages", "venv", ".venv"})
"""Directories never watched (besides hidden ones, whose names start with a dot)."""

# Options the reloader consumes itself: the child serves on the socket passed with --fd.
_RELOADER_ONLY: Final = frozenset(
    {"target", "reload", "reload_dir", "reload_poll", "host", "port", "uds", "fd", "workers", "balance"}
)


def watched_file(path: str, root: str) -> bool:
    """Whether a change to ``path`` (under the watched directory ``root``) means a restart."""
    if not path.endswith(".py"):
        return False
    relative = os.path.relpath(path, root)
    parts = relative.split(os.sep)[:-1]
    return not any(part in IGNORED_DIRS or (part.startswith(".") and part != "..") for part in parts)


class Watcher(Protocol):
    """Reports changed files; ``wait`` blocks at most about ``POLL_INTERVAL`` seconds."""

    name: str

    def wait(self) -> list[str]:
        """The files changed since the last call (sorted), or ``[]`` after a quiet interval."""
        ...

    def close(self) -> None: ...


class PollingWatcher:
    """Scans the ``.py`` files under ``dirs`` every ``interval`` seconds and compares their mtimes."""

    name = "polling"

    def __init__(self, dirs: Sequence[str], stop: threading.Event, interval: float = POLL_INTERVAL) -> None:
        self.dirs = [os.path.abspath(d) for d in dirs]
        self.stop = stop
        self.interval = interval
        self.snapshot = self.scan()

    def scan(self) -> dict[str, tuple[int, int]]:
        """Every watched file, with its (mtime in ns, size)."""
        found: dict[str, tuple[int, int]] = {}
        for root in self.dirs:
            for directory, subdirs, files in os.walk(root):
                subdirs[:] = [d for d in subdirs if d not in IGNORED_DIRS and not d.startswith(".")]
                for name in files:
                    if not name.endswith(".py"):
                        continue
                    path = os.path.join(directory, name)
                    with contextlib.suppress(OSError):  # removed between walk and stat
                        info = os.stat(path)
                        found[path] = (info.st_mtime_ns, info.st_size)
        return found

    def wait(self) -> list[str]:
        if self.stop.wait(self.interval):
            return []
        current = self.scan()
        previous, self.snapshot = self.snapshot, current
        return sorted(
            path for path in current.keys() | previous.keys() if current.get(path) != previous.get(path)
        )

    def close(self) -> None:
        pass


class WatchfilesWatcher:
    """inotify (or the platform's equivalent) through ``watchfiles``."""

    name = "watchfiles"

    def __init__(self, dirs: Sequence[str], stop: threading.Event) -> None:
        import watchfiles  # type: ignore[import-not-found, unused-ignore]

        self.dirs = [os.path.abspath(d) for d in dirs]
        # watchfiles logs every batch at INFO; the reloader says which file changed itself.
        logging.getLogger("watchfiles.main").setLevel(logging.WARNING)

        def wanted(change: object, path: str) -> bool:
            return any(
                watched_file(path, root)
                for root in self.dirs
                if path.startswith(root.rstrip(os.sep) + os.sep)
            )

        self._changes: Iterator[set[tuple[Any, str]]] = watchfiles.watch(
            *self.dirs,
            watch_filter=wanted,
            stop_event=stop,
            rust_timeout=int(POLL_INTERVAL * 1000),
            yield_on_timeout=True,
            raise_interrupt=False,
        )

    def wait(self) -> list[str]:
        changes = next(self._changes, None)
        return sorted({path for _, path in changes}) if changes else []

    def close(self) -> None:
        close = getattr(self._changes, "close", None)
        if close is not None:
            close()


def make_watcher(dirs: Sequence[str], stop: threading.Event, *, poll: bool = False) -> Watcher:
    """watchfiles if it is installed and ``poll`` is false, else the polling watcher."""
    if not poll:
        try:
            return WatchfilesWatcher(dirs, stop)
        except ImportError:
            logger.info("watchfiles is not installed (pip install 'cyclehttp[reload]'): polling for changes")
    return PollingWatcher(dirs, stop)


def child_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, fd: int) -> list[str]:
    """The command line of a child serving on ``fd``: every resolved option, written out."""
    arguments = [args.target]
    for action in parser._actions:
        if not action.option_strings or action.dest in _RELOADER_ONLY or env_name(action) is None:
            continue
        value = getattr(args, action.dest, None)
        if action.nargs == 0:  # a flag: given when its value is the one it stores
            if value == action.const:
                arguments.append(action.option_strings[0])
            continue
        if value is not None:
            arguments.append(f"{action.option_strings[0]}={value}")
    arguments.append(f"--fd={fd}")
    return arguments


def child_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables that name options: the child's command line says it all."""
    names = {env_name(action) for action in parser._actions}
    return {key: value for key, value in environ.items() if key not in names}


class Reloader:
    """Runs the server in a child process on ``sock`` and restarts it when a watched file changes."""

    def __init__(
        self,
        command: Sequence[str],
        sock: socket.socket,
        dirs: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        graceful_timeout: float = 10.0,
        poll: bool = False,
    ) -> None:
        self.command = list(command)
        self.sock = sock
        self.dirs = [os.path.abspath(d) for d in dirs]
        self.env = dict(os.environ if env is None else env)
        self.graceful_timeout = graceful_timeout
        self.poll = poll
        self.stop = threading.Event()
        self.signals = 0
        self.last_signal = "stop"
        self.child: subprocess.Popen[bytes] | None = None
        self._reported_exit = False

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM; returns 0 (a child's failure is logged, not fatal)."""
        previous = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        watcher: Watcher | None = None
        try:
            watcher = make_watcher(self.dirs, self.stop, poll=self.poll)
            how = "watchfiles" if watcher.name == "watchfiles" else f"polling every {POLL_INTERVAL:g} s"
            logger.info("reloading when a .py file changes in %s (%s)", ", ".join(self.dirs), how)
            self._start()
            while not self.stop.is_set():
                changed = watcher.wait()
                if self.stop.is_set():
                    break
                if changed:
                    self._restart(changed)
                else:
                    self._check_child()
            logger.info("%s received: stopping the server", self.last_signal)
            self._stop_child(self.graceful_timeout + STOP_GRACE)
        finally:
            if watcher is not None:
                watcher.close()
            self._kill_child()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.last_signal = signal.Signals(signum).name
        self.stop.set()

    def _start(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self.child = subprocess.Popen(
            self.command, pass_fds=(self.sock.fileno(),), env=self.env, preexec_fn=_ignore_sigint
        )
        self._reported_exit = False
        logger.debug("started the server (pid %d)", self.child.pid)

    def _check_child(self) -> None:
        child = self.child
        if child is None or self._reported_exit:
            return
        status = child.poll()
        if status is not None:
            self._reported_exit = True
            logger.error(
                "the server (pid %d) %s; waiting for a file change to start it again",
                child.pid,
                _why(status),
            )

    def _restart(self, changed: Sequence[str]) -> None:
        shown = ", ".join(os.path.relpath(path) for path in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        logger.info("%s changed: restarting the server", shown + more)
        self._check_child()
        self._stop_child(min(self.graceful_timeout, RESTART_TIMEOUT) + STOP_GRACE)
        if not self.stop.is_set():
            self._start()

    def _stop_child(self, timeout: float) -> None:
        """SIGTERM the child and wait up to ``timeout`` seconds for its drain; SIGKILL it then.

        A signal to the reloader meanwhile (the first one during a restart, a second one when
        stopping) forces the stop: a second SIGTERM makes the child close its connections at
        once and run its shutdown hooks, and it gets ``STOP_GRACE`` seconds for that.
        """
        child = self.child
        if child is None or child.poll() is not None:
            return
        signals = 1 if self.stop.is_set() else 0  # the signals this wait was started by
        _terminate(child)
        deadline = time.monotonic() + timeout
        forced = False
        while child.poll() is None:
            if not forced and self.signals > signals:
                logger.warning("signal received while the server drains: it closes its connections now")
                _terminate(child)
                forced = True
                deadline = min(deadline, time.monotonic() + STOP_GRACE)
            if time.monotonic() >= deadline:
                logger.warning("the server (pid %d) is still running: killing it", child.pid)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(0.1)
        self._kill_child()

    def _kill_child(self) -> None:
        """SIGKILL and reap the child if it still runs (never leave one behind)."""
        child = self.child
        if child is None:
            return
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait()


def _ignore_sigint() -> None:
    """Run in the child between fork and exec: SIGINT ignored, which ``exec`` keeps (module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)


def _why(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"

"""Binding, the Date clock, signals and graceful shutdown.

``Server`` runs one app on the running event loop: ``await server.start()``
runs the app's startup hooks, then binds and serves; ``await server.shutdown()``
drains and closes, then runs the shutdown hooks (``cyclehttp.lifecycle``). ``serve()``
adds signal handling for a process that exists to serve (the CLI, a worker), in
place before the startup hooks run; test servers use ``start``/``shutdown`` and
never touch signal handlers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable, Sequence
from time import monotonic_ns
from typing import TYPE_CHECKING, Any

import uvloop

from cyclehttp.clock.metrics_page import CONTENT_TYPE, render_metrics
from cyclehttp.clock.stats import Stats, StatsSnapshot, format_duration
from cyclehttp.config import Config
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.cycle.request import Request
from cyclehttp.cycle.response import Response
from cyclehttp.cycle.server_state import ServerState
from cyclehttp.cycle.targets import HandlerTarget
from cyclehttp.cycle.wire import DATE
from cyclehttp.errors import StartupError
from cyclehttp.serving.banner import listening_line

if TYPE_CHECKING:
    from cyclehttp.app.application import App
    from cyclehttp.app.lifespan import Lifespan
    from cyclehttp.clock.shared import WorkerSlot

__all__ = ["Server", "ServerState", "StartupError", "run"]

logger = logging.getLogger("cyclehttp")
error_log = logging.getLogger("cyclehttp.error")


class Server:
    """One app served on one event loop."""

    def __init__(self, app: App, config: Config | None = None, *, run_hooks: bool = True) -> None:
        self.app = app
        self.config = (config or Config()).merged_with_app(metrics_path=app.metrics_path, debug=app.debug)
        self.run_hooks = run_hooks
        """False: ``start``/``shutdown`` leave the app's hooks alone, for a host that runs several
        servers in one process and the hooks once around them all (the gunicorn worker)."""
        self._lifespan: Lifespan | None = None
        self._state: ServerState | None = None
        self._servers: list[asyncio.Server] = []
        self._clock: asyncio.TimerHandle | None = None
        self.stats = Stats()
        self.worker: WorkerSlot | None = None
        """Set in a worker process of ``--workers N``: the tick publishes this server's figures
        there, and the metrics page shows every worker's (``cyclehttp.sharedstats``)."""

    @property
    def state(self) -> ServerState:
        if self._state is None:
            raise RuntimeError("the server is not started; await server.start() first")
        return self._state

    @property
    def started(self) -> bool:
        """Whether ``start`` got as far as accepting connections (still True after ``shutdown``)."""
        return self._state is not None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(sock for server in self._servers for sock in server.sockets)

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0)."""
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        raise RuntimeError("the server has no TCP socket")

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        sock: socket.socket | None = None,
        socks: Sequence[socket.socket] | None = None,
        backlog: int = 2048,
    ) -> None:
        """Compile the routes, bind and start accepting connections.

        With ``sock`` or ``socks`` (listening sockets, e.g. from ``listeners.open_listeners``)
        it serves on those and ignores ``host``/``port``. The event loop calls ``listen(backlog)``
        on every socket, inherited ones included.

        First, unless ``run_hooks`` is False, the app's startup hooks run (before any
        connection is accepted; connections that arrive meanwhile wait in the backlog).

        Raises ``RouteError`` when the metrics path is also a route of the app, and
        ``StartupError`` when a startup hook raises: then nothing listens, and the shutdown
        hooks declared before the failed hook have run. When binding fails after the
        hooks ran, the shutdown hooks run before the error propagates.
        """
        listening = _listening(sock, socks)
        state = self._prepare()
        await self._start_hooks()
        await self._open(state, host, port, listening, backlog)

    def _prepare(self) -> ServerState:
        """Compile the routes and make the state the connections share: what can fail before a hook runs."""
        router = self.app.compile()
        metrics_path = self.config.metrics_path
        if metrics_path is not None:
            router.add_internal(metrics_path, HandlerTarget(self._metrics_page))
        self.stats.attach(router)
        self.app.attach_stats(self.stats)
        return ServerState(router, self.config, self.stats, asyncio.get_running_loop(), self.app)

    async def _start_hooks(self, stop_requested: Callable[[], bool] | None = None) -> bool:
        """The app's startup hooks, unless ``run_hooks`` is False; ``_stop_hooks`` undoes them.

        False when ``stop_requested`` ended the start between two hooks (undone already).
        """
        if not self.run_hooks:
            return True
        lifespan = self.app.lifespan()
        if not await lifespan.start(stop_requested):  # raises StartupError, having undone what it did
            return False
        self._lifespan = lifespan
        return True

    async def _open(
        self,
        state: ServerState,
        host: str,
        port: int,
        listening: list[socket.socket] | None,
        backlog: int,
    ) -> None:
        """Start accepting connections and the once-a-second tick; a failure runs the shutdown hooks."""
        self._state = state
        try:
            await self._listen(state, host, port, listening, backlog)
        except BaseException:
            for server in self._servers:
                server.close()
            self._servers = []
            self._state = None
            await self._stop_hooks()
            raise
        DATE.refresh()
        state.router.refresh()
        self._schedule_tick(state.loop)

    async def _listen(
        self,
        state: ServerState,
        host: str,
        port: int,
        listening: list[socket.socket] | None,
        backlog: int,
    ) -> None:
        loop = state.loop

        def protocol_factory() -> HttpProtocol:
            return HttpProtocol(state)

        if listening is None:
            self._servers = [
                await loop.create_server(protocol_factory, host, port, backlog=backlog, reuse_address=True)
            ]
        else:
            self._servers = []  # filled as it goes: a failure closes the ones already serving
            for listener in listening:
                if listener.family == socket.AF_UNIX:
                    server = await loop.create_unix_server(protocol_factory, sock=listener, backlog=backlog)
                else:
                    server = await loop.create_server(protocol_factory, sock=listener, backlog=backlog)
                self._servers.append(server)

    async def _stop_hooks(self) -> None:
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.stop()

    def _metrics_page(self, request: Request) -> Response:
        from cyclehttp.version import __version__

        if self.worker is not None:
            snapshot, workers = self.worker.whole(self.stats.snapshot())
            return Response(render_metrics(snapshot, __version__, workers), content_type=CONTENT_TYPE)
        return Response(render_metrics(self.stats.snapshot(), __version__), content_type=CONTENT_TYPE)

    def _publish(self) -> None:
        """A worker's once-a-second publication of its figures; a failure is logged, never raised."""
        if self.worker is not None:
            try:
                self.worker.publish(self.stats.snapshot())
            except Exception:
                error_log.exception("internal error while publishing this worker's figures")

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        # Tick just after each wall-clock second so Date changes when the second does.
        delay = 1.0 - (time.time() % 1.0) + 0.001
        self._clock = loop.call_later(delay, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        DATE.refresh()
        state = self._state
        if state is not None:
            state.router.refresh()
            now = monotonic_ns()
            for connection in list(state.connections):
                try:
                    connection.check_timeouts(now)
                except Exception:
                    error_log.exception("internal error while checking a connection's timeouts")
                    connection.abort()
        if self.worker is not None:
            self._publish()
        self._schedule_tick(loop)

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, let requests in flight finish, then close every connection.

        Idle keep-alive connections close at once; busy ones get their
        response with ``Connection: close``. After ``timeout`` seconds
        (``Config.graceful_timeout`` by default) streamed responses are ended
        (a chunked stream with its last chunk) and the rest are aborted.
        Then the app's shutdown hooks run (once, however often this is called).
        """
        if timeout is None:
            timeout = self.config.graceful_timeout
        for server in self._servers:
            server.close()
        state = self._state
        if state is not None:
            state.draining = True
            for connection in list(state.connections):
                connection.shutdown()
            deadline = time.monotonic() + timeout
            while state.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            # Bodies still being sent (an endless event stream, uvicorn #251) end now: a
            # chunked stream gets its last chunk and a close, a turn of the loop to write it.
            if sum(connection.end_long() for connection in list(state.connections)):
                for _ in range(3):
                    await asyncio.sleep(0)
            for connection in list(state.connections):
                connection.abort()
            # Let the aborted transports call connection_lost.
            for _ in range(3):
                if not state.connections:
                    break
                await asyncio.sleep(0)
        for server in self._servers:
            await server.wait_closed()
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        self._publish()
        await self._stop_hooks()

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        sock: socket.socket | None = None,
        socks: Sequence[socket.socket] | None = None,
        backlog: int = 2048,
        announce: bool = True,
    ) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully (a second signal forces it).

        ``sock``/``socks``/``backlog`` as in ``start``. The sockets are not closed here:
        whoever opened them closes them (``listeners.close_listeners``).

        The signal handlers are in place before the startup hooks run, so a signal during a
        slow start (a database that takes its time) is a stop like any other, not a kill that
        would skip the shutdown hooks: the running startup hook finishes, no later one starts,
        nothing is accepted, the shutdown hooks of the hooks that ran run and ``serve``
        returns normally. Cancelling the running hook instead would leave what it half made
        with no shutdown hook to undo it. A second signal during the startup hooks does cancel
        the running one (``CancelledError`` in it), for a hook that hangs; the hooks that
        finished before it are undone all the same.

        SIGINT is left alone when the process started with it ignored: a ``--workers``
        worker and a ``--reload`` child are made that way (Ctrl-C in a terminal reaches the
        whole process group, and their parent decides), and so is a command that a script
        starts in the background with ``&``. SIGTERM is always handled: it is how process
        managers stop a server.

        ``announce=False`` (a worker, whose supervisor speaks for all of them) leaves out the
        listening line and the exit summary and logs the first signal at debug level.
        """
        listening = _listening(sock, socks)
        state = self._prepare()
        loop = asyncio.get_running_loop()
        say = logger.info if announce else logger.debug
        stop = asyncio.Event()
        signals_seen = 0
        starting: asyncio.Task[bool] | None = None

        def on_signal(signum: int) -> None:
            nonlocal signals_seen
            signals_seen += 1
            name = signal.Signals(signum).name
            hooks = starting if starting is not None and not starting.done() else None
            if signals_seen == 1:
                stop.set()
                if hooks is not None:
                    logger.info(
                        "%s received during startup: stopping once the running startup hook is done "
                        "(a second signal cancels it)",
                        name,
                    )
                else:
                    say("%s received, shutting down", name)
            elif hooks is not None:
                logger.warning("second signal during startup: cancelling the startup hooks")
                hooks.cancel()
            elif self._state is not None:
                logger.warning("second signal: closing every connection now")
                for connection in list(self._state.connections):
                    connection.abort()
            else:  # stopped during startup: nothing was served, the shutdown hooks run
                logger.warning("second signal: nothing to close; the shutdown hooks finish first")

        handled = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            handled.insert(0, signal.SIGINT)
        for signum in handled:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            starting = asyncio.create_task(self._start_hooks(stop.is_set))
            try:
                await asyncio.wait((starting,))
            finally:
                starting.cancel()  # only when serve itself is cancelled: a no-op once the hooks are done
            if starting.cancelled():
                logger.warning("startup cancelled: nothing was served; the hooks that ran are undone")
            elif not starting.result():  # StartupError: the failed hook undid the start already
                logger.info("startup stopped: nothing was served; the hooks that ran are undone")
            else:
                if stop.is_set():  # the signal came after the last hook
                    logger.info("startup done: not serving; running the shutdown hooks")
                    await self._stop_hooks()
                else:
                    await self._open(state, host, port, listening, backlog)
                    if not stop.is_set():
                        say("%s", listening_line(self.sockets, self.config))
                    await stop.wait()
                    await self.shutdown()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
        if announce:
            logger.info("%s", summary(self.stats.snapshot()))


def _listening(
    sock: socket.socket | None, socks: Sequence[socket.socket] | None
) -> list[socket.socket] | None:
    """The sockets ``sock``/``socks`` name, or None for ``host``/``port``; ``ValueError`` for a bad mix."""
    if sock is not None and socks is not None:
        raise ValueError("pass sock= or socks=, not both")
    listening = [sock] if sock is not None else list(socks) if socks is not None else None
    if listening is not None and not listening:
        raise ValueError("socks= is empty: nothing to listen on")
    return listening


def summary(snapshot: StatsSnapshot) -> str:
    """The one line logged at exit: what was served and how fast."""
    latency = snapshot.request_latency
    lifetime = snapshot.connection_lifetime
    statuses = ", ".join(f"{count} {name}" for name, count in snapshot.requests_by_status.items() if count)
    return (
        f"stopped after {format_duration(snapshot.uptime_seconds * 1e9)}: "
        f"{snapshot.connections_accepted} connections, {snapshot.requests} requests"
        + (f" ({statuses})" if statuses else "")
        + f"; request latency p50 {format_duration(latency.p50_ns)} p99 {format_duration(latency.p99_ns)}"
        + f"; connection lifetime p50 {format_duration(lifetime.p50_ns)}"
        + f" p99 {format_duration(lifetime.p99_ns)}"
    )


def run(app: App, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve ``app`` on uvloop until SIGINT/SIGTERM. ``options`` are ``Config`` fields."""
    server = Server(app, Config.from_options(options))
    uvloop.run(server.serve(host, port))

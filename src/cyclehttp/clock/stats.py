"""The figures the server keeps about its own cycles.

Three durations are timed with ``time.monotonic_ns()`` into fixed-size
histograms (memory does not grow with traffic):

* connection lifetime: ``connection_made`` to ``connection_lost``;
* request latency: the read that brought a request's first byte to the
  write that handed its response to the transport;
* handler time: a user handler's call, including its awaits.

Counters are plain ints bumped on the event loop thread. Requests are counted
on the route targets themselves (one increment per response; see
``Router``), so the snapshot reads them from the router the server serves.
``Stats.snapshot()`` gives a typed, immutable copy for readers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from cyclehttp.clock.histogram import HistogramSnapshot, LogHistogram

if TYPE_CHECKING:
    from cyclehttp.types import RouteCounts

__all__ = [
    "EXPECTATION_FAILED",
    "LIMITS",
    "METHOD_NOT_IMPLEMENTED",
    "PARSE_ERROR",
    "STATUS_CLASSES",
    "TIMEOUTS",
    "RouteCount",
    "Stats",
    "StatsSnapshot",
    "WorkerStats",
    "format_duration",
]

# Why a request was refused: a Config field for a limit or a timeout, a parse error,
# an expectation other than 100-continue (417) or a method llhttp does not know (501):
# well-formed requests, counted as refused only.
PARSE_ERROR: Final = "parse"
EXPECTATION_FAILED: Final = "expectation"
METHOD_NOT_IMPLEMENTED: Final = "method"
LIMITS: Final = ("max_header_size", "max_url_length", "max_body_size", "max_connections")
TIMEOUTS: Final = ("header_timeout", "body_timeout", "keep_alive_timeout", "send_timeout")
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
"""The status classes responses are counted by, in display order (the metrics reader uses them too)."""

# Route labels of the answers that belong to no declared route.
ANY_METHOD: Final = "<any>"
OTHER_METHOD: Final = "<other>"
UNMATCHED: Final = "<unmatched>"
REJECTED: Final = "<rejected>"


@dataclass(frozen=True, slots=True)
class RouteCount:
    """Responses sent for one route with one status class."""

    method: str
    """The route's method; ``<other>`` for its 405 answers, ``<any>`` for 404 and rejections."""
    route: str
    """The declared path pattern; ``<unmatched>`` for 404, ``<rejected>`` for bad input."""
    status: str
    """Status class: ``1xx`` .. ``5xx``."""
    count: int


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A point-in-time copy of every counter and timing of one server."""

    started_at: float
    """Unix time the server started."""
    uptime_seconds: float
    connections_accepted: int
    connections_open: int
    connections_closed: int
    requests: int
    """Responses sent, error answers included."""
    requests_by_status: Mapping[str, int]
    """``1xx`` .. ``5xx`` -> responses; every class is present."""
    requests_by_route: tuple[RouteCount, ...]
    """Non-zero counts, in route declaration order."""
    bytes_received: int
    bytes_sent: int
    parse_errors: int
    limit_hits: Mapping[str, int]
    """Config field -> requests or connections refused by it (``max_body_size``: 413 ...)."""
    timeouts: Mapping[str, int]
    """Config field -> connections it closed (``header_timeout``: 408 ...)."""
    handler_exceptions: int
    internal_errors: int
    connection_lifetime: HistogramSnapshot
    request_latency: HistogramSnapshot
    handler_time: HistogramSnapshot


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker process of a ``--workers N`` server, as the metrics page shows it.

    The figures of a worker slot are cumulative over the processes that held
    it (a restarted worker continues from its predecessor's last published
    counts), so they never go backwards.
    """

    index: int
    """The worker's slot, ``0 .. N-1``; stable across restarts."""
    pid: int
    """The process serving the slot now (or last, until its replacement publishes)."""
    starts: int
    """Processes that have held the slot: 1 + restarts."""
    requests: int
    """Responses sent by the slot's processes."""
    connections_open: int
    age_seconds: float
    """Seconds since these figures were published (0 for the worker rendering the page)."""


class Stats:
    """Live counters and histograms, updated by the protocol on the event loop thread."""

    __slots__ = (
        "_router",
        "_started_monotonic",
        "bytes_received",
        "bytes_sent",
        "connection_lifetime",
        "connections_accepted",
        "connections_closed",
        "handler_exceptions",
        "handler_time",
        "internal_errors",
        "limit_hits",
        "parse_errors",
        "rejected",
        "request_latency",
        "started_at",
        "timeouts",
    )

    def __init__(self) -> None:
        self._router: RouteCounts | None = None
        self.connection_lifetime = LogHistogram()
        self.request_latency = LogHistogram()
        self.handler_time = LogHistogram()
        self.limit_hits = dict.fromkeys(LIMITS, 0)
        self.timeouts = dict.fromkeys(TIMEOUTS, 0)
        self.rejected = [0] * 6  # error answers to bad input, by the status's first digit
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self._zero()

    def _zero(self) -> None:
        self.connections_accepted = 0
        self.connections_closed = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.parse_errors = 0
        self.handler_exceptions = 0
        self.internal_errors = 0
        for counts in (self.limit_hits, self.timeouts):
            for key in counts:
                counts[key] = 0
        for i in range(len(self.rejected)):
            self.rejected[i] = 0
        for histogram in (self.connection_lifetime, self.request_latency, self.handler_time):
            histogram.reset()

    def attach(self, router: RouteCounts) -> None:
        """Read request counts from ``router``'s targets (the server serving from it calls this)."""
        self._router = router
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()

    def connection_closed(self, lifetime_ns: int) -> None:
        self.connections_closed += 1
        self.connection_lifetime.record(lifetime_ns)

    def refused(self, reason: str, status: int) -> None:
        """Count one error answer to bad input.

        ``reason`` is a Config field (a limit or a timeout), ``PARSE_ERROR``, or
        ``EXPECTATION_FAILED`` or ``METHOD_NOT_IMPLEMENTED`` (well-formed requests
        the server does not serve: 417, 501), which count in the status classes only.
        """
        self.rejected[status // 100] += 1
        if reason in self.limit_hits:
            self.limit_hits[reason] += 1
        elif reason in self.timeouts:
            self.timeouts[reason] += 1
        elif reason == PARSE_ERROR:
            self.parse_errors += 1

    def snapshot(self) -> StatsSnapshot:
        routes = self._route_counts()
        by_status = dict.fromkeys(STATUS_CLASSES, 0)
        for route in routes:
            by_status[route.status] += route.count
        return StatsSnapshot(
            started_at=self.started_at,
            uptime_seconds=time.monotonic() - self._started_monotonic,
            connections_accepted=self.connections_accepted,
            connections_open=self.connections_accepted - self.connections_closed,
            connections_closed=self.connections_closed,
            requests=sum(by_status.values()),
            requests_by_status=MappingProxyType(by_status),
            requests_by_route=tuple(routes),
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            parse_errors=self.parse_errors,
            limit_hits=MappingProxyType(dict(self.limit_hits)),
            timeouts=MappingProxyType(dict(self.timeouts)),
            handler_exceptions=self.handler_exceptions,
            internal_errors=self.internal_errors,
            connection_lifetime=self.connection_lifetime.snapshot(),
            request_latency=self.request_latency.snapshot(),
            handler_time=self.handler_time.snapshot(),
        )

    def _route_counts(self) -> list[RouteCount]:
        counts: list[RouteCount] = []
        if self._router is not None:
            for (method, route), status_counts in self._router.request_counts():
                for digit, count in enumerate(status_counts):
                    if count:
                        counts.append(RouteCount(method, route, STATUS_CLASSES[digit - 1], count))
        for digit, count in enumerate(self.rejected):
            if count:
                counts.append(RouteCount(ANY_METHOD, REJECTED, STATUS_CLASSES[digit - 1], count))
        return counts

    def reset(self) -> None:
        """Zero every counter and histogram (connections still open stay counted as open)."""
        open_now = self.connections_accepted - self.connections_closed
        self._zero()
        self.connections_accepted = open_now
        if self._router is not None:
            self._router.reset_counts()


def format_duration(ns: float | None, *, micro: str = "u") -> str:
    """A duration for people: ``850ns``, ``45.2us``, ``1.25ms``, ``3.10s``, ``2m05s``, ``3h07m``, ``2d03h``.

    Under a minute, three significant digits in the largest unit that keeps the
    number under 1000 (``999.9us`` is ``1.00ms``, not ``1e+03us``); from a minute
    on, two whole units with no space, so a log line keeps a duration as one
    word. ``micro`` is the prefix of microseconds: ``u`` (ASCII, for logs) or
    ``µ`` (a terminal that can draw it). ``-`` for a figure that is missing
    (``None``), negative or not finite.
    """
    if ns is None or not math.isfinite(ns) or ns < 0:
        return "-"
    if round(ns) < 1000:
        return f"{ns:.0f}ns"
    for scale, unit, limit in ((1e3, micro + "s", 1000), (1e6, "ms", 1000), (1e9, "s", 60)):
        text = _three_digits(ns / scale)
        if float(text) < limit:
            return text + unit
    total = round(ns / 1e9)
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def _three_digits(value: float) -> str:
    """``value`` (from 1 up) with three significant digits: ``1.25``, ``45.2``, ``850``."""
    if round(value, 2) < 10:
        return f"{value:.2f}"
    if round(value, 1) < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"

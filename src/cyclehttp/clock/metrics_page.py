"""The metrics page: a ``StatsSnapshot`` in the Prometheus text exposition format 0.0.4.

Histogram bounds are half-octaves (``2**k - 1`` and ``3 * 2**(k-1) - 1``
nanoseconds), which are bucket edges of ``LogHistogram`` too, so every
``_bucket{le=...}`` count is exact, not interpolated. The bound set is fixed
per histogram, as Prometheus expects. Exact min/max and the percentile
estimates go in ``cyclehttp_duration_stat_seconds``, for readers (such as
``cyclehttp stats``) that want them without ``histogram_quantile``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from cyclehttp.clock.histogram import HistogramSnapshot
from cyclehttp.clock.stats import StatsSnapshot, WorkerStats

__all__ = ["CONTENT_TYPE", "bucket_bounds", "render_metrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def bucket_bounds(low_exponent: int, high_exponent: int) -> tuple[int, ...]:
    """Inclusive upper bounds in ns: ``2**k - 1`` and ``3 * 2**(k-1) - 1`` from ``2**low``..``2**high``."""
    bounds: list[int] = []
    for k in range(low_exponent, high_exponent + 1):
        bounds.append((1 << k) - 1)
        if k < high_exponent:
            bounds.append((3 << (k - 1)) - 1)
    return tuple(bounds)


# Request and handler times: 1 µs to 68.7 s; connection lifetimes: 16 µs to 73 min.
REQUEST_BOUNDS: Final = bucket_bounds(10, 36)
CONNECTION_BOUNDS: Final = bucket_bounds(14, 42)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _seconds(ns: int | float) -> str:
    return repr(ns / 1e9)


class _Page:
    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: int | float | str, **labels: str) -> None:
        if labels:
            text = ",".join(f'{key}="{_escape(label)}"' for key, label in labels.items())
            self.lines.append(f"{name}{{{text}}} {value}")
        else:
            self.lines.append(f"{name} {value}")

    def single(self, name: str, kind: str, help_text: str, value: int | float) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)

    def labelled(
        self, name: str, kind: str, help_text: str, label: str, values: Iterable[tuple[str, int]]
    ) -> None:
        self.family(name, kind, help_text)
        for key, value in values:
            self.sample(name, value, **{label: key})

    def histogram(
        self, name: str, help_text: str, histogram: HistogramSnapshot, bounds: tuple[int, ...]
    ) -> None:
        self.family(name, "histogram", help_text)
        buckets = histogram.buckets
        cumulative = 0
        position = 0
        for bound in bounds:
            while position < len(buckets) and buckets[position][0] <= bound:
                cumulative += buckets[position][1]
                position += 1
            self.sample(name + "_bucket", cumulative, le=_seconds(bound))
        self.sample(name + "_bucket", histogram.count, le="+Inf")
        self.sample(name + "_sum", _seconds(histogram.sum_ns))
        self.sample(name + "_count", histogram.count)


_HISTOGRAMS: Final = (
    ("request", "cyclehttp_request_duration_seconds",
     "First byte of a request to its response handed to the transport.", REQUEST_BOUNDS),
    ("handler", "cyclehttp_handler_duration_seconds",
     "A user handler's call to its rendered result, awaits included.", REQUEST_BOUNDS),
    ("connection", "cyclehttp_connection_duration_seconds",
     "Connection lifetime, accept to close.", CONNECTION_BOUNDS),
)  # fmt: skip


def render_metrics(snapshot: StatsSnapshot, version: str, workers: Sequence[WorkerStats] = ()) -> str:
    """The whole metrics page for ``snapshot``.

    ``workers`` (a ``--workers N`` server; ``snapshot`` is then every worker's
    figures merged) adds the per-worker families at the end; a single-process
    server's page is unchanged.
    """
    page = _Page()
    page.family("cyclehttp_info", "gauge", "The cyclehttp version serving.")
    page.sample("cyclehttp_info", 1, version=version)
    page.single("cyclehttp_start_time_seconds", "gauge", "Unix time the server started.", snapshot.started_at)
    page.single(
        "cyclehttp_uptime_seconds", "gauge", "Seconds since the server started.", snapshot.uptime_seconds
    )
    page.single(
        "cyclehttp_connections_accepted_total",
        "counter",
        "Connections accepted.",
        snapshot.connections_accepted,
    )
    page.single(
        "cyclehttp_connections_closed_total", "counter", "Connections closed.", snapshot.connections_closed
    )
    page.single("cyclehttp_connections_open", "gauge", "Connections open now.", snapshot.connections_open)
    page.family("cyclehttp_requests_total", "counter", "Responses sent, by route and status class.")
    for route in snapshot.requests_by_route:
        page.sample(
            "cyclehttp_requests_total",
            route.count,
            method=route.method,
            route=route.route,
            status=route.status,
        )
    page.single("cyclehttp_received_bytes_total", "counter", "Request bytes read.", snapshot.bytes_received)
    page.single("cyclehttp_sent_bytes_total", "counter", "Response bytes written.", snapshot.bytes_sent)
    page.single(
        "cyclehttp_parse_errors_total",
        "counter",
        "Malformed requests (400, 501, 505).",
        snapshot.parse_errors,
    )
    page.labelled(
        "cyclehttp_limit_hits_total",
        "counter",
        "Requests or connections refused by a limit.",
        "limit",
        snapshot.limit_hits.items(),
    )
    page.labelled(
        "cyclehttp_timeouts_total",
        "counter",
        "Connections ended by a timeout.",
        "timeout",
        snapshot.timeouts.items(),
    )
    page.single(
        "cyclehttp_handler_exceptions_total",
        "counter",
        "Handlers that raised (answered 500).",
        snapshot.handler_exceptions,
    )
    page.single(
        "cyclehttp_internal_errors_total",
        "counter",
        "Connections aborted by an internal error.",
        snapshot.internal_errors,
    )
    timings = {
        "request": snapshot.request_latency,
        "handler": snapshot.handler_time,
        "connection": snapshot.connection_lifetime,
    }
    for key, name, help_text, bounds in _HISTOGRAMS:
        page.histogram(name, help_text, timings[key], bounds)
    page.family(
        "cyclehttp_duration_stat_seconds",
        "gauge",
        "Exact min and max, and percentiles (at most 12.5% above the true value), of each histogram.",
    )
    for key, histogram in timings.items():
        for stat, ns in (
            ("min", histogram.min_ns),
            ("p50", histogram.p50_ns),
            ("p90", histogram.p90_ns),
            ("p99", histogram.p99_ns),
            ("p99.9", histogram.p999_ns),
            ("max", histogram.max_ns),
        ):
            page.sample("cyclehttp_duration_stat_seconds", _seconds(ns), histogram=key, stat=stat)
    if workers:
        _worker_families(page, workers)
    page.lines.append("")
    return "\n".join(page.lines)


def _worker_families(page: _Page, workers: Sequence[WorkerStats]) -> None:
    page.single("cyclehttp_workers", "gauge", "Worker processes of this server (--workers).", len(workers))
    page.family("cyclehttp_worker_info", "gauge", "The process serving each worker slot now.")
    for w in workers:
        page.sample("cyclehttp_worker_info", 1, worker=str(w.index), pid=str(w.pid))
    families = (
        ("cyclehttp_worker_requests_total", "counter", "Responses sent by each worker slot.", "requests"),
        (
            "cyclehttp_worker_connections_open",
            "gauge",
            "Connections open now, by worker.",
            "connections_open",
        ),
        ("cyclehttp_worker_starts_total", "counter", "Processes started for each worker slot.", "starts"),
        (
            "cyclehttp_worker_figures_age_seconds",
            "gauge",
            "Age of each worker's figures on this page (published once a second).",
            "age_seconds",
        ),
    )
    for name, kind, help_text, attribute in families:
        page.family(name, kind, help_text)
        for w in workers:
            page.sample(name, getattr(w, attribute), worker=str(w.index))

"""Reading a metrics page: :func:`parse`, :func:`metrics_url`, and :func:`fetch` against a real HTTP server.

The metrics pages are written here by :func:`metrics_page` from a few figures, in the
format of the server's metrics endpoint (every family with HELP and TYPE lines, the
full fixed half-octave bucket sets, the duration stat gauges), so the tests do not
depend on the exporter's code. ``test_statsview`` draws the same pages and serves them
with :func:`serve`.
"""

from __future__ import annotations

import math
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cyclehttp.clock.metrics_reader import MetricsError, MetricsPage, fetch, metrics_url, parse

# --- writing a metrics page ------------------------------------------------------------------

Observations = Sequence[tuple[int, int]]
"""``(duration in ns, times)`` pairs."""


def half_octave_bounds_ns(first_k: int, last_k: int) -> list[int]:
    """``2**k - 1`` and ``3 * 2**(k-1) - 1`` ns, ascending, from ``2**first_k - 1`` to ``2**last_k - 1``."""
    bounds = []
    for k in range(first_k, last_k):
        bounds += [2**k - 1, 3 * 2 ** (k - 1) - 1]
    return [*bounds, 2**last_k - 1]


BOUNDS_NS = {
    "request": half_octave_bounds_ns(10, 36),
    "handler": half_octave_bounds_ns(10, 36),
    "connection": half_octave_bounds_ns(14, 42),
}


def exact_percentile_ns(observations: Observations, numerator: int, denominator: int) -> int:
    """The value at rank ceil(q * n), q = numerator / denominator."""
    total = sum(times for _value, times in observations)
    rank = max(1, -(-total * numerator // denominator))
    seen = 0
    for value, times in sorted(observations):
        seen += times
        if seen >= rank:
            return value
    raise AssertionError("rank beyond the observations")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Page:
    """The figures a metrics page is written from; ``omit`` drops families (an older server)."""

    version: str = "0.1.0"
    start_time: float = 1_795_550_400.123
    uptime: float = 8012.5
    accepted: int = 10_234
    closed: int = 10_222
    requests: Sequence[tuple[str, str, str, int]] = (
        ("GET", "/", "2xx", 1_200_000),
        ("GET", "/users/{user_id:int}", "2xx", 3_000),
        ("GET", "/users/{user_id:int}", "4xx", 12),
        ("GET", "/error", "5xx", 42),
        ("POST", "/upload", "2xx", 950),
        ("<any>", "<unmatched>", "4xx", 3_401),
        ("<other>", "/", "4xx", 7),
        ("<any>", "<rejected>", "4xx", 3),
    )
    received: int = 120_300_000
    sent: int = 1_453_000_000
    parse_errors: int = 2
    limit_hits: Mapping[str, int] = field(
        default_factory=lambda: {
            "max_header_size": 0,
            "max_url_length": 0,
            "max_body_size": 1,
            "max_connections": 0,
        }
    )
    timeouts: Mapping[str, int] = field(
        default_factory=lambda: {"header_timeout": 2, "body_timeout": 0, "keep_alive_timeout": 10}
    )
    handler_exceptions: int = 42
    internal_errors: int = 0
    histograms: Mapping[str, Observations] = field(default_factory=dict)
    omit: frozenset[str] = frozenset()


def metrics_page(page: Page) -> str:
    """Write ``page`` in the metrics endpoint's format (Prometheus text exposition 0.0.4)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float | int]]) -> None:
        if name.removeprefix("cyclehttp_") in page.omit:
            return
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{labels} {value!r}")

    family(
        "cyclehttp_info", "gauge", "The cyclehttp version serving.", [(f'{{version="{page.version}"}}', 1)]
    )
    family("cyclehttp_start_time_seconds", "gauge", "Unix time the server started.", [("", page.start_time)])
    family("cyclehttp_uptime_seconds", "gauge", "Seconds since the server started.", [("", page.uptime)])
    family("cyclehttp_connections_accepted_total", "counter", "Connections accepted.", [("", page.accepted)])
    family("cyclehttp_connections_closed_total", "counter", "Connections closed.", [("", page.closed)])
    family(
        "cyclehttp_connections_open", "gauge", "Connections open now.", [("", page.accepted - page.closed)]
    )
    family(
        "cyclehttp_requests_total",
        "counter",
        "Responses sent, by route and status class.",
        [
            (f'{{method="{escape(m)}",route="{escape(r)}",status="{s}"}}', n)
            for m, r, s, n in page.requests
            if n
        ],
    )
    family("cyclehttp_received_bytes_total", "counter", "Request bytes read.", [("", page.received)])
    family("cyclehttp_sent_bytes_total", "counter", "Response bytes written.", [("", page.sent)])
    family("cyclehttp_parse_errors_total", "counter", "Malformed requests.", [("", page.parse_errors)])
    family(
        "cyclehttp_limit_hits_total",
        "counter",
        "Requests refused by a limit.",
        [(f'{{limit="{k}"}}', n) for k, n in page.limit_hits.items()],
    )
    family(
        "cyclehttp_timeouts_total",
        "counter",
        "Timeouts, by kind.",
        [(f'{{timeout="{k}"}}', n) for k, n in page.timeouts.items()],
    )
    family(
        "cyclehttp_handler_exceptions_total",
        "counter",
        "Handlers that raised.",
        [("", page.handler_exceptions)],
    )
    family("cyclehttp_internal_errors_total", "counter", "Internal errors.", [("", page.internal_errors)])
    stat_samples: list[tuple[str, float | int]] = []
    for key in ("request", "handler", "connection"):
        observations = page.histograms.get(key, ())
        total = sum(times for _value, times in observations)
        buckets: list[tuple[str, float | int]] = []
        for bound in BOUNDS_NS[key]:
            below = sum(times for value, times in observations if value <= bound)
            buckets.append((f'{{le="{bound / 1e9!r}"}}', below))
        buckets.append(('{le="+Inf"}', total))
        family(
            f"cyclehttp_{key}_duration_seconds",
            "histogram",
            f"The {key} durations.",
            [],
        )
        name = f"cyclehttp_{key}_duration_seconds"
        if name.removeprefix("cyclehttp_") not in page.omit:
            out.extend(f"{name}_bucket{labels} {value!r}" for labels, value in buckets)
            out.append(f"{name}_sum {sum(v * t for v, t in observations) / 1e9!r}")
            out.append(f"{name}_count {total}")
        values = {"min": 0, "p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "max": 0}
        if total:
            values = {
                "min": min(v for v, _t in observations),
                "p50": exact_percentile_ns(observations, 50, 100),
                "p90": exact_percentile_ns(observations, 90, 100),
                "p99": exact_percentile_ns(observations, 99, 100),
                "p99.9": exact_percentile_ns(observations, 999, 1000),
                "max": max(v for v, _t in observations),
            }
        stat_samples += [
            (f'{{histogram="{key}",stat="{s}"}}', v / 1e9 if v else 0) for s, v in values.items()
        ]
    family(
        "cyclehttp_duration_stat_seconds",
        "gauge",
        "Exact min and max, and percentiles (within 12.5%), of each histogram.",
        stat_samples,
    )
    return "\n".join(out) + "\n"


def spread(center_ns: int, total: int, octaves: int = 6) -> list[tuple[int, int]]:
    """``total`` observations around ``center_ns``: a log-normal-ish hump with a slow tail."""
    weights = []
    for step in range(-4 * octaves // 2, 4 * octaves):
        value = int(center_ns * 2 ** (step / 4))
        shape = math.exp(-((step / 4) ** 2)) if step < 0 else math.exp(-step / 4)
        weights.append((max(value, 1), shape))
    norm = sum(w for _v, w in weights)
    observations = [(v, round(total * w / norm)) for v, w in weights]
    return [(v, t) for v, t in observations if t]


def realistic_page(**changes: object) -> Page:
    requests = spread(45_000, 1_206_000)
    handler = spread(21_000, 1_202_000)
    connection = spread(3_000_000_000, 10_222, octaves=5)
    page = Page(histograms={"request": requests, "handler": handler, "connection": connection})
    for name, value in changes.items():
        setattr(page, name, value)
    return page


@pytest.fixture
def sample() -> MetricsPage:
    return parse(metrics_page(realistic_page()))


# --- parse -----------------------------------------------------------------------------------


def test_parse_counters_and_gauges(sample: MetricsPage) -> None:
    assert sample.version == "0.1.0"
    assert sample.uptime == 8012.5
    assert sample.start_time == 1_795_550_400.123
    assert (sample.connections_accepted, sample.connections_closed, sample.connections_open) == (
        10_234,
        10_222,
        12,
    )
    assert (sample.received_bytes, sample.sent_bytes) == (120_300_000, 1_453_000_000)
    assert (sample.parse_errors, sample.handler_exceptions, sample.internal_errors) == (2, 42, 0)
    assert sample.limit_hits == {
        "max_header_size": 0,
        "max_url_length": 0,
        "max_body_size": 1,
        "max_connections": 0,
    }
    assert sample.timeouts == {"header_timeout": 2, "body_timeout": 0, "keep_alive_timeout": 10}


def test_parse_requests_by_status_and_route(sample: MetricsPage) -> None:
    assert sample.requests is not None
    assert sample.requests[("GET", "/users/{user_id:int}", "4xx")] == 12
    assert sample.requests_total == 1_200_000 + 3_000 + 12 + 42 + 950 + 3_401 + 7 + 3
    assert sample.requests_by_status == {"1xx": 0, "2xx": 1_203_950, "3xx": 0, "4xx": 3_423, "5xx": 42}
    routes = sample.routes
    assert [(r.method, r.route) for r in routes[:3]] == [
        ("GET", "/"),
        ("<any>", "<unmatched>"),
        ("GET", "/users/{user_id:int}"),
    ]
    assert routes[2].count == 3_012
    assert routes[2].by_status == {"2xx": 3_000, "4xx": 12}


def test_parse_label_escapes_and_odd_spacing() -> None:
    text = (
        'cyclehttp_requests_total{method="GET",route="/a\\\\b\\"c\\nd",status="2xx"} 5\n'
        'cyclehttp_requests_total { route = "/x,y}" , method="PUT", status="2xx", } 7 1700000000000\n'
        'cyclehttp_requests_total{method="GET",route="/odd\\q",status="5xx"} 1e+00\n'
    )
    metrics = parse(text)
    assert metrics.requests == {
        ("GET", '/a\\b"c\nd', "2xx"): 5,
        ("PUT", "/x,y}", "2xx"): 7,
        ("GET", "/odd\\q", "5xx"): 1,
    }


def test_parse_special_values() -> None:
    text = (
        "cyclehttp_uptime_seconds NaN\n"
        "cyclehttp_received_bytes_total 1.5e+03\n"
        "cyclehttp_sent_bytes_total +Inf\n"
        'cyclehttp_duration_stat_seconds{histogram="request",stat="p50"} 1e-06\n'
        'cyclehttp_request_duration_seconds_bucket{le="1e-06"} 3\n'
        'cyclehttp_request_duration_seconds_bucket{le="+Inf"} 4\n'
    )
    metrics = parse(text)
    assert metrics.uptime is None
    assert metrics.received_bytes == 1500
    assert metrics.sent_bytes is None
    histogram = metrics.histograms["request"]
    assert histogram.bounds == (1e-06, math.inf)
    assert histogram.counts == (3, 1)
    assert histogram.stats == {"p50": 1e-06}


def test_parse_histograms_are_per_bucket_and_sum_to_count(sample: MetricsPage) -> None:
    text = metrics_page(realistic_page())
    assert list(sample.histograms) == ["request", "handler", "connection"]
    for key, histogram in sample.histograms.items():
        count = re.search(rf"^cyclehttp_{key}_duration_seconds_count (\d+)$", text, re.M)
        assert count is not None
        assert histogram.count == sum(histogram.counts) == int(count.group(1)) > 0
        assert len(histogram.bounds) == len(BOUNDS_NS[key]) + 1
        assert histogram.bounds[0] == BOUNDS_NS[key][0] / 1e9
        assert histogram.bounds[-1] == math.inf
        assert list(histogram.bounds) == sorted(histogram.bounds)
        assert all(c >= 0 for c in histogram.counts)
        assert histogram.stats["max"] >= histogram.stats["p99.9"] >= histogram.stats["p50"] > 0
    request = sample.histograms["request"]
    # de-cumulated: one bucket's count is the difference of two cumulative samples
    cumulative = {
        float(m.group(1)): int(m.group(2))
        for m in re.finditer(r'^cyclehttp_request_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)
    }
    i = request.bounds.index(65535 / 1e9)
    assert request.counts[i] == cumulative[65535 / 1e9] - cumulative[49151 / 1e9]


def test_parse_sample_order_does_not_matter(sample: MetricsPage) -> None:
    lines = metrics_page(realistic_page()).splitlines()
    shuffled = parse("\n".join(reversed(lines)))
    assert shuffled == sample


OLDER_SERVER_OMITS = frozenset(
    {
        "info",
        "uptime_seconds",
        "start_time_seconds",
        "requests_total",
        "limit_hits_total",
        "handler_duration_seconds",
        "duration_stat_seconds",
        "connections_open",
    }
)
"""Families a page from an older (or differently configured) server may lack."""


def test_parse_missing_families_do_not_crash() -> None:
    metrics = parse(metrics_page(realistic_page(omit=OLDER_SERVER_OMITS)))
    assert metrics.version is None
    assert metrics.uptime is None
    assert metrics.requests is None
    assert metrics.requests_total is None
    assert metrics.requests_by_status is None
    assert metrics.routes == []
    assert metrics.limit_hits is None
    assert metrics.connections_open == 12  # accepted - closed
    assert list(metrics.histograms) == ["request", "connection"]
    assert metrics.histograms["request"].stats == {}


GARBAGE = (
    "# just a comment\n"
    "# TYPE\n"
    "not a sample line at all\n"
    "cyclehttp_uptime_seconds\n"
    "cyclehttp_uptime_seconds twelve\n"
    "cyclehttp_uptime_seconds 1 2 3\n"
    'cyclehttp_requests_total{method="GET",route="/unterminated} 3\n'
    "cyclehttp_requests_total{method=GET} 3\n"
    "{} 4\n"
    "\x00\x1b[31m\n"
    'cyclehttp_request_duration_seconds_bucket{le="soon"} 3\n'
    "cyclehttp_connections_accepted_total 17\n"
)
"""A page of malformed lines around one good sample."""


def test_parse_empty_and_garbage() -> None:
    assert parse("") == MetricsPage()
    metrics = parse(GARBAGE)
    assert metrics.connections_accepted == 17
    assert metrics.uptime is None
    assert metrics.requests is None


def test_parse_empty_requests_family_is_present_but_empty() -> None:
    metrics = parse(metrics_page(Page(requests=())))
    assert metrics.requests == {}
    assert metrics.requests_total == 0


def test_parse_ignores_other_programs_samples() -> None:
    text = "process_cpu_seconds_total 3.5\ngo_goroutines 7\ncyclehttp_parse_errors_total 4\n"
    assert parse(text) == MetricsPage(parse_errors=4)


# --- metrics_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000/metrics"),
        ("localhost:8000", "http://localhost:8000/metrics"),
        ("  example.com  ", "http://example.com/metrics"),
        ("http://h:1", "http://h:1/metrics"),
        ("http://h:1/", "http://h:1/metrics"),
        ("HTTPS://h:1", "https://h:1/metrics"),
        ("https://h/stats/prom", "https://h/stats/prom"),
        ("http://h:1/metrics?x=1", "http://h:1/metrics?x=1"),
        ("[::1]:8000", "http://[::1]:8000/metrics"),
    ],
)
def test_metrics_url(typed: str, url: str) -> None:
    assert metrics_url(typed) == url


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("ftp://x", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("", "empty URL"),
        ("http://", "no host"),
        ("h:notaport", "bad port"),
    ],
)
def test_metrics_url_rejects(typed: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics_url(typed)


# --- fetch against a real HTTP server ------------------------------------------------------


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; the tests talk to 127.0.0.1 directly."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Served:
    url: str
    pages: dict[str, tuple[int, str]]
    """path -> (status, body)."""


@contextmanager
def serve() -> Iterator[Served]:
    """An HTTP server on 127.0.0.1 serving ``Served.pages``; ``/metrics`` starts as a realistic page."""
    pages: dict[str, tuple[int, str]] = {"/metrics": (200, metrics_page(realistic_page()))}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = pages.get(self.path, (404, "not found\n"))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        yield Served(f"http://{host!s}:{port}", pages)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Served]:
    with serve() as served:
        yield served


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_fetch(server: Served) -> None:
    text = fetch(server.url + "/metrics", timeout=5)
    assert text == server.pages["/metrics"][1]


def test_fetch_errors(server: Served) -> None:
    with pytest.raises(
        MetricsError, match=r"answered 404 Not Found; is the server running with --metrics-path /nope\?"
    ):
        fetch(server.url + "/nope", timeout=5)
    server.pages["/other"] = (200, "# HELP up Up.\nup 1\n")
    with pytest.raises(MetricsError, match="not a cyclehttp metrics page"):
        fetch(server.url + "/other", timeout=5)
    server.pages["/created"] = (201, metrics_page(Page()))
    with pytest.raises(MetricsError, match="answered 201"):
        fetch(server.url + "/created", timeout=5)
    port = free_port()
    with pytest.raises(
        MetricsError, match=rf"cannot reach http://127.0.0.1:{port}/metrics: .*; is the server"
    ):
        fetch(f"http://127.0.0.1:{port}/metrics", timeout=5)

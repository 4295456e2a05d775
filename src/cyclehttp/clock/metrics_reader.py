"""Reading a cyclehttp server's metrics page: find it, fetch it, parse it into :class:`MetricsPage`.

The server publishes its figures as a Prometheus text page (see the metrics path
option). This module is the client side of that page, kept apart from the drawing
in :mod:`cyclehttp.clock.stats_view` so the figures can be read, tested and reused
without a terminal in the picture. It is a pure consumer of the page: standard
library only, plus one constant of its own layer (``STATUS_CLASSES``, from
:mod:`cyclehttp.clock.stats`, so the status classes have one definition), and no
import of the server's internals. So it works against any reachable server,
including an older or newer version: a family the page lacks is ``None`` in the
result, lines it does not understand are ignored.

:func:`metrics_url` normalises what the user typed, :func:`fetch` gets the page
(failures are raised as :class:`MetricsError`, worded for the user), and
:func:`parse` turns its text into :class:`MetricsPage`, with each duration histogram
de-cumulated into per-bucket counts (:class:`Histogram`).
"""

from __future__ import annotations

import http.client
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from cyclehttp.clock.stats import STATUS_CLASSES

__all__ = [
    "Histogram",
    "MetricsError",
    "MetricsPage",
    "RouteTotal",
    "fetch",
    "metrics_url",
    "parse",
]

DEFAULT_PATH: Final = "/metrics"
MAX_BODY: Final = 16 * 1024 * 1024
"""Largest metrics page accepted (a real one is a few kB); protects against a wrong URL."""

_PREFIX: Final = "cyclehttp_"
_HISTOGRAM_ORDER: Final = ("request", "handler", "connection")


class MetricsError(Exception):
    """The metrics page cannot be fetched or is not a cyclehttp metrics page.

    The message names the URL, says what went wrong and what to check, so the
    command line can print it as is.
    """


# --- the data -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Histogram:
    """One duration histogram, de-cumulated so each bucket can be drawn as a bar."""

    bounds: tuple[float, ...] = ()
    """Inclusive upper bound of each bucket in seconds, ascending; the last may be ``math.inf``."""
    counts: tuple[int, ...] = ()
    """Observations in each bucket (per bucket, not cumulative); same length as ``bounds``."""
    sum_seconds: float | None = None
    """Total of all observations (the ``_sum`` sample), if reported."""
    stats: Mapping[str, float] = field(default_factory=dict)
    """Server-computed ``min``, ``p50``, ``p90``, ``p99``, ``p99.9``, ``max`` in seconds, when reported."""

    @property
    def count(self) -> int:
        """Observations in all buckets."""
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class RouteTotal:
    """Responses sent for one (method, route), all status classes together."""

    method: str
    route: str
    count: int
    by_status: Mapping[str, int]
    """Status class (``2xx`` ...) -> responses; only classes with a count."""


@dataclass(frozen=True, slots=True)
class MetricsPage:
    """What one metrics page says; ``None`` (or an empty mapping) where the page lacks a family."""

    version: str | None = None
    start_time: float | None = None
    """Unix time the server started."""
    uptime: float | None = None
    """Seconds since the server started."""
    connections_accepted: int | None = None
    connections_closed: int | None = None
    connections_open: int | None = None
    requests: Mapping[tuple[str, str, str], int] | None = None
    """``(method, route, status class)`` -> responses sent; ``None`` if the family is missing."""
    received_bytes: int | None = None
    sent_bytes: int | None = None
    parse_errors: int | None = None
    limit_hits: Mapping[str, int] | None = None
    """Limit name (``max_body_size`` ...) -> refusals, in page order."""
    timeouts: Mapping[str, int] | None = None
    """Timeout name (``header_timeout`` ...) -> connections closed, in page order."""
    handler_exceptions: int | None = None
    internal_errors: int | None = None
    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    """``request``, ``handler``, ``connection`` (and any other) -> histogram, in display order."""

    @property
    def requests_total(self) -> int | None:
        """All responses sent, or ``None`` when the page has no request counts."""
        return None if self.requests is None else sum(self.requests.values())

    @property
    def requests_by_status(self) -> dict[str, int] | None:
        """``1xx`` .. ``5xx`` (every class present, 0 if none) plus any odd class the page names."""
        if self.requests is None:
            return None
        by_status = dict.fromkeys(STATUS_CLASSES, 0)
        for (_method, _route, status), count in self.requests.items():
            by_status[status] = by_status.get(status, 0) + count
        return by_status

    @property
    def routes(self) -> list[RouteTotal]:
        """Responses per (method, route), busiest first (ties by route, then method)."""
        totals: dict[tuple[str, str], dict[str, int]] = {}
        for (method, route, status), count in (self.requests or {}).items():
            by_status = totals.setdefault((method, route), {})
            by_status[status] = by_status.get(status, 0) + count
        result = [
            RouteTotal(method, route, sum(by_status.values()), by_status)
            for (method, route), by_status in totals.items()
        ]
        result.sort(key=lambda r: (-r.count, r.route, r.method))
        return result


# --- fetching -------------------------------------------------------------------------


_SCHEME_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def metrics_url(url: str) -> str:
    """Turn what the user typed into the metrics page's URL.

    ``127.0.0.1:8000`` -> ``http://127.0.0.1:8000/metrics``; a URL without a path
    (or with just ``/``) gets ``/metrics``; a URL with a path is kept as is.
    Raises ValueError, with a message meant for the user, for another scheme
    than http/https, no host or a bad port.
    """
    text = url.strip()
    if not text:
        raise ValueError("empty URL; give the server's address, e.g. 127.0.0.1:8000")
    if not _SCHEME_RE.match(text):
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}; use http:// or https://")
    if not parts.hostname:
        raise ValueError(f"no host in URL {url!r}; expected e.g. 127.0.0.1:8000 or http://host:port/metrics")
    try:
        parts.port  # noqa: B018 - validates the port, raises ValueError
    except ValueError:
        raise ValueError(f"bad port in URL {url!r}; expected a number from 0 to 65535") from None
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def fetch(url: str, timeout: float = 5.0) -> str:
    """GET the metrics page at ``url`` and return its text.

    Raises MetricsError when the server cannot be reached or does not answer
    within ``timeout`` seconds, answers anything but 200, or sends a page with no
    ``cyclehttp_`` samples (most likely a wrong path or another program).
    """
    path = urllib.parse.urlsplit(url).path or "/"
    hint = f"is the server running with --metrics-path {path}?"
    request = urllib.request.Request(
        url, headers={"Accept": "text/plain;version=0.0.4, */*;q=0.1", "User-Agent": "cyclehttp-stats"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            if status != 200:
                raise MetricsError(f"{url} answered {status} {response.reason}, not 200; {hint}")
            body: bytes = response.read(MAX_BODY + 1)
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:
        exc.close()
        raise MetricsError(f"{url} answered {exc.code} {exc.reason}; {hint}") from None
    except urllib.error.URLError as exc:
        raise MetricsError(f"cannot reach {url}: {_reason(exc.reason, timeout)}; {hint}") from None
    except TimeoutError:
        raise MetricsError(f"no answer from {url} within {timeout:g}s; is the server overloaded?") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise MetricsError(f"cannot read {url}: {_reason(exc, timeout)}; {hint}") from None
    if len(body) > MAX_BODY:
        raise MetricsError(f"{url} sent more than {MAX_BODY // (1024 * 1024)} MiB; not a metrics page")
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    if not any(name.startswith(_PREFIX) for name, _labels, _value in _samples(text)):
        raise MetricsError(f"{url} is not a cyclehttp metrics page (no cyclehttp_ samples); {hint}")
    return text


def _reason(reason: object, timeout: float) -> str:
    """A short, human cause: ``Connection refused`` rather than ``[Errno 111] Connection refused``."""
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason)
    return text or type(reason).__name__


# --- parsing ----------------------------------------------------------------------


_NAME_RE: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_LABEL_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HISTOGRAM_RE: Final = re.compile(r"cyclehttp_([A-Za-z0-9_]+?)_duration_seconds_(bucket|sum|count)")
_ESCAPES: Final[Mapping[str, str]] = {"n": "\n", "\\": "\\", '"': '"'}

Sample = tuple[str, dict[str, str], float]


def _samples(text: str) -> Iterator[Sample]:
    """Yield ``(name, labels, value)`` for each sample line; skip comments and anything malformed."""
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            sample = _parse_sample(line)
            if sample is not None:
                yield sample


def _parse_sample(line: str) -> Sample | None:
    match = _NAME_RE.match(line)
    if match is None:
        return None
    name, i = match.group(), match.end()
    if i < len(line) and not (line[i].isspace() or line[i] == "{"):
        return None
    i = _skip_spaces(line, i)
    labels: dict[str, str] = {}
    if i < len(line) and line[i] == "{":
        parsed = _parse_labels(line, i + 1)
        if parsed is None:
            return None
        labels, i = parsed
    rest = line[i:].split()
    if not 1 <= len(rest) <= 2:
        return None
    token = rest[0]
    try:
        # integers stay exact (a float has 53 bits): counters can pass 2**53
        value: float = int(token) if _INT_RE.fullmatch(token) else float(token)
    except ValueError:
        return None
    return name, labels, value


def _skip_spaces(line: str, i: int) -> int:
    while i < len(line) and line[i] in " \t":
        i += 1
    return i


def _parse_labels(line: str, i: int) -> tuple[dict[str, str], int] | None:
    """Parse ``name="value",...}`` from ``line[i:]``; return the labels and the index after ``}``."""
    labels: dict[str, str] = {}
    n = len(line)
    while True:
        i = _skip_spaces(line, i)
        if i >= n:
            return None
        if line[i] == "}":
            return labels, i + 1
        match = _LABEL_NAME_RE.match(line, i)
        if match is None:
            return None
        key = match.group()
        i = _skip_spaces(line, match.end())
        if i >= n or line[i] != "=":
            return None
        i = _skip_spaces(line, i + 1)
        if i >= n or line[i] != '"':
            return None
        i += 1
        chars: list[str] = []
        while True:
            if i >= n:
                return None
            char = line[i]
            if char == '"':
                i += 1
                break
            if char == "\\" and i + 1 < n:
                chars.append(_ESCAPES.get(line[i + 1], "\\" + line[i + 1]))
                i += 2
            else:
                chars.append(char)
                i += 1
        labels[key] = "".join(chars)
        i = _skip_spaces(line, i)
        if i < n and line[i] == ",":
            i += 1


def _count(value: float | None) -> int | None:
    """A counter's value as an int; ``None`` for a missing, negative or non-finite one."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return round(value)


def parse(text: str) -> MetricsPage:
    """Read a metrics page into :class:`MetricsPage`.

    Tolerant by design: comments, unknown families and malformed lines are
    skipped, sample order does not matter, and a family the page lacks (an older
    server) is ``None`` in the result. Histograms are de-cumulated into
    per-bucket counts that add up to the ``_count`` sample.
    """
    declared: set[str] = set()
    for raw in text.splitlines():
        words = raw.split()
        if len(words) >= 3 and words[0] == "#" and words[1] == "TYPE":
            declared.add(words[2])

    plain: dict[str, float] = {}
    version: str | None = None
    requests: dict[tuple[str, str, str], int] = {}
    limit_hits: dict[str, int] = {}
    timeouts: dict[str, int] = {}
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    totals: dict[str, float] = {}
    stats: dict[str, dict[str, float]] = {}
    for name, labels, value in _samples(text):
        if not name.startswith(_PREFIX):
            continue
        histogram_match = _HISTOGRAM_RE.fullmatch(name)
        if name == "cyclehttp_info":
            version = labels.get("version", version)
        elif name == "cyclehttp_requests_total":
            count = _count(value)
            if count is not None:
                key = (labels.get("method", "?"), labels.get("route", "?"), labels.get("status", "?"))
                requests[key] = count
        elif name == "cyclehttp_limit_hits_total":
            count = _count(value)
            if count is not None:
                limit_hits[labels.get("limit", "?")] = count
        elif name == "cyclehttp_timeouts_total":
            count = _count(value)
            if count is not None:
                timeouts[labels.get("timeout", "?")] = count
        elif name == "cyclehttp_duration_stat_seconds":
            if "histogram" in labels and "stat" in labels and math.isfinite(value):
                stats.setdefault(labels["histogram"], {})[labels["stat"]] = value
        elif histogram_match is not None:
            which, part = histogram_match.groups()
            if part == "bucket":
                try:
                    bound = float(labels.get("le", "nan"))
                except ValueError:
                    continue
                if not math.isnan(bound) and math.isfinite(value):
                    buckets.setdefault(which, {})[bound] = value
            elif math.isfinite(value):
                (sums if part == "sum" else totals)[which] = value
        elif not labels:
            plain[name] = value

    def present(family: str, found: bool) -> bool:
        return found or _PREFIX + family in declared

    keys = set(buckets) | set(totals) | set(stats)
    ordered = [k for k in _HISTOGRAM_ORDER if k in keys] + sorted(keys - set(_HISTOGRAM_ORDER))
    histograms = {
        k: _histogram(buckets.get(k, {}), sums.get(k), totals.get(k), stats.get(k, {})) for k in ordered
    }

    accepted = _count(plain.get("cyclehttp_connections_accepted_total"))
    closed = _count(plain.get("cyclehttp_connections_closed_total"))
    open_now = _count(plain.get("cyclehttp_connections_open"))
    if open_now is None and accepted is not None and closed is not None:
        open_now = max(0, accepted - closed)
    uptime = plain.get("cyclehttp_uptime_seconds")
    start = plain.get("cyclehttp_start_time_seconds")
    return MetricsPage(
        version=version,
        start_time=start if start is not None and math.isfinite(start) else None,
        uptime=uptime if uptime is not None and math.isfinite(uptime) and uptime >= 0 else None,
        connections_accepted=accepted,
        connections_closed=closed,
        connections_open=open_now,
        requests=requests if present("requests_total", bool(requests)) else None,
        received_bytes=_count(plain.get("cyclehttp_received_bytes_total")),
        sent_bytes=_count(plain.get("cyclehttp_sent_bytes_total")),
        parse_errors=_count(plain.get("cyclehttp_parse_errors_total")),
        limit_hits=limit_hits if present("limit_hits_total", bool(limit_hits)) else None,
        timeouts=timeouts if present("timeouts_total", bool(timeouts)) else None,
        handler_exceptions=_count(plain.get("cyclehttp_handler_exceptions_total")),
        internal_errors=_count(plain.get("cyclehttp_internal_errors_total")),
        histograms=histograms,
    )


def _histogram(
    cumulative: Mapping[float, float],
    total_sum: float | None,
    total: float | None,
    stats: Mapping[str, float],
) -> Histogram:
    """De-cumulate ``le -> cumulative count`` (tolerating a non-monotonic or truncated bucket list)."""
    bounds: list[float] = []
    counts: list[int] = []
    seen = 0
    for bound, value in sorted(cumulative.items()):
        running = max(seen, round(max(value, 0.0)))
        bounds.append(bound)
        counts.append(running - seen)
        seen = running
    declared = _count(total)
    if declared is not None and declared > seen:
        if bounds and bounds[-1] == math.inf:
            counts[-1] += declared - seen
        else:
            bounds.append(math.inf)
            counts.append(declared - seen)
    return Histogram(tuple(bounds), tuple(counts), total_sum, dict(stats))

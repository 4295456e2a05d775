"""``cyclehttp stats URL``: a running server's metrics page, drawn for a terminal.

:mod:`cyclehttp.clock.metrics_reader` fetches and parses the page; this module draws
one screen from the resulting :class:`~cyclehttp.clock.metrics_reader.MetricsPage`: a
summary of connections, requests, traffic and errors, one bar chart per duration
histogram with its percentiles, and the busiest routes. Figures the page lacks (an
older server) are shown as ``-`` or skipped, so any reachable server can be shown.

:func:`render` draws a screen as a string and :func:`render_error` the screen of a
page that cannot be read; both are pure (the clock can be injected, so they are
tested without a terminal). The command line around them, ``--watch`` included, is
:mod:`cyclehttp.serving.stats_command`.

Every line of a screen fits the requested width. The Unicode glyphs used (``·``
``─`` ``≤`` ``◀`` ``…`` ``µ`` and the eighth blocks ``▏``..``█``) are all one
column wide in Western terminals; an ASCII rendition is used on request or when
stdout's encoding cannot represent them (:data:`UNICODE_CHARS` are the characters
to check).
"""

from __future__ import annotations

import math
import textwrap
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cyclehttp.clock.metrics_reader import Histogram, MetricsPage
from cyclehttp.clock.stats import STATUS_CLASSES, format_duration

__all__ = ["UNICODE_CHARS", "render", "render_error"]

_MAX_ROWS: Final = 14
"""Most bar rows per histogram; adjacent buckets are merged pairwise until the chart fits."""
_MAX_BAR: Final = 64
"""Longest bar in cells: on a very wide terminal, numbers stay close to their labels."""
_TOP_ROUTES: Final = 8
_LABEL_WIDTH: Final = 13
"""Width of the summary's label column (``Connections`` plus two spaces)."""
_HEADER_STATS: Final = ("p50", "p90", "p99", "p99.9", "max")
_MARKS: Final = (("p50", 50, 100), ("p99", 99, 100))
_HISTOGRAM_TITLES: Final[Mapping[str, tuple[str, str]]] = {
    "request": ("Request latency", "requests"),
    "handler": ("Handler time", "calls"),
    "connection": ("Connection lifetime", "connections"),
}


# --- formatting -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Glyphs:
    """The characters a screen is drawn with: Unicode or plain ASCII."""

    sep: str
    rule: str
    at_most: str
    more_than: str
    mark: str
    ellipsis: str
    micro: str
    eighths: str
    """Bar glyphs for 1/8 .. 8/8 of a cell (ASCII: only whole cells)."""


_UNICODE: Final = _Glyphs(" · ", "─", "≤ ", "> ", "◀ ", "…", "µ", "▏▎▍▌▋▊▉█")
_ASCII: Final = _Glyphs(" | ", "-", "<= ", "> ", "< ", "...", "u", "#")
UNICODE_CHARS: Final = "·─≤◀…µ▏▎▍▌▋▊▉█"
"""Every non-ASCII character a Unicode screen may use."""


def _char_cells(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes (wide CJK characters count two; never less than ``len``)."""
    return len(text) if text.isascii() else sum(_char_cells(c) for c in text)


def _truncate(text: str, width: int, ellipsis: str) -> str:
    """``text`` cut to ``width`` columns, ending in ``ellipsis`` when something was cut."""
    if _cells(text) <= width:
        return text
    if width <= len(ellipsis):
        return ellipsis[: max(width, 0)]
    budget, used, kept = width - len(ellipsis), 0, []
    for char in text:
        used += _char_cells(char)
        if used > budget:
            break
        kept.append(char)
    return "".join(kept) + ellipsis


def _ljust(text: str, width: int) -> str:
    return text + " " * (width - _cells(text))


def _rjust(text: str, width: int) -> str:
    return " " * (width - _cells(text)) + text


def _clean(text: str, ascii_only: bool) -> str:
    """Make text from the page safe to print: no control characters (no terminal escapes)."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    if ascii_only:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text


def _duration(seconds: float | None, g: _Glyphs) -> str:
    """A duration from the page (seconds), as :func:`~cyclehttp.clock.stats.format_duration` writes it."""
    return format_duration(None if seconds is None else seconds * 1e9, micro=g.micro)


def _uptime(seconds: float | None) -> str:
    """Uptime in whole seconds: ``45s``, ``2m05s``, ``2h13m``, ``3d04h``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    whole = int(seconds)
    return f"{whole}s" if whole < 60 else format_duration(whole * 1e9)


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _bytes(value: float | None) -> str:
    """Human size in SI units: ``512 B``, ``120.3 MB``."""
    if value is None:
        return "-"
    if value < 999.5:
        return f"{value:.0f} B"
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        value /= 1000
        if value < 999.95 or unit == "ZB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _rate(value: float) -> str:
    """A per-second rate: ``1,523``, ``15.2``, ``0.50``."""
    if value >= 99.95:
        return f"{value:,.0f}"
    if value >= 9.995:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _count_text(value: int, width: int) -> str:
    """``value`` with thousands separators, or compact (``1.2T``) when that would exceed ``width``."""
    text = f"{value:,}"
    if len(text) <= width:
        return text
    scaled = float(value)
    for suffix in ("k", "M", "G", "T", "P", "E"):
        scaled /= 1000
        if scaled < 999.5:
            return f"{scaled:.3g}{suffix}"
    return f"{value:.2e}"


def _wrap(label: str, items: Sequence[str], width: int, indent: int, sep: str) -> list[str]:
    """``label`` then ``items`` joined by ``sep``, continued on indented lines when too long.

    An item too long for a line of its own is split after its commas
    (``timeouts header_timeout 2, keep_alive_timeout 10``) rather than cut.
    """
    lines: list[str] = []
    line = _ljust(label, indent)
    started = False
    for item in items:
        parts = [item]
        if indent + _cells(item) > width and ", " in item:
            pieces = item.split(", ")
            parts = [piece + "," for piece in pieces[:-1]] + pieces[-1:]
        for n, part in enumerate(parts):
            glue = " " if n else sep
            candidate = line + glue + part if started else line + part
            if started and _cells(candidate) > width:
                lines.append(line)
                line = " " * indent + part
            else:
                line = candidate
            started = True
    lines.append(line)
    return lines


# --- rendering ---------------------------------------------------------------------


def render(
    page: MetricsPage,
    *,
    width: int = 80,
    previous: MetricsPage | None = None,
    interval: float | None = None,
    ascii_only: bool = False,
    url: str = "",
    now: float | None = None,
) -> str:
    """Draw one screen of ``page`` as text, no line wider than ``width`` columns.

    With ``previous`` (the page read ``interval`` seconds earlier) it shows the
    current rates (requests/s, connections/s, bytes/s); without, totals and the
    average request rate over the uptime. ``url`` is shown in the title and
    ``now`` (Unix time, default: the current time) sets its clock, so tests can
    fix it. ``ascii_only`` draws with plain ASCII characters only.
    """
    g = _ASCII if ascii_only else _UNICODE
    restarted = (
        previous is not None
        and previous.uptime is not None
        and page.uptime is not None
        and page.uptime < previous.uptime
    )
    if restarted or not interval or interval <= 0:
        previous = None  # counters were reset, or no time base: no rates
    lines = _title(page.version, url, width, g, now)
    lines += _summary(page, previous, interval, width, g, restarted)
    for key, histogram in page.histograms.items():
        lines.append("")
        lines += _histogram_lines(key, histogram, width, g)
    route_lines = _route_lines(page, previous, interval, width, g)
    if route_lines:
        lines.append("")
        lines += route_lines
    return "\n".join(_truncate(_clean(line, ascii_only).rstrip(), width, g.ellipsis) for line in lines)


def _title(version: str | None, url: str, width: int, g: _Glyphs, now: float | None) -> list[str]:
    clock = time.strftime("%H:%M:%S", time.localtime(time.time() if now is None else now))
    left = "cyclehttp" + (f" {version}" if version else "") + (f"{g.sep}{url}" if url else "")
    left = _truncate(left, max(width - len(clock) - 2, 0), g.ellipsis)
    return [left + " " * max(width - _cells(left) - len(clock), 1) + clock, g.rule * width]


def _rate_of(current: int | None, before: int | None, interval: float | None) -> float | None:
    """Per-second increase of a counter; ``None`` when unknown or when it went down (a reset)."""
    if current is None or before is None or not interval or interval <= 0 or current < before:
        return None
    return (current - before) / interval


def _summary(
    m: MetricsPage,
    previous: MetricsPage | None,
    interval: float | None,
    width: int,
    g: _Glyphs,
    restarted: bool,
) -> list[str]:
    def line(label: str, items: Sequence[str]) -> list[str]:
        return _wrap(label, items, width, _LABEL_WIDTH, g.sep)

    uptime = [_uptime(m.uptime)]
    if m.start_time is not None:
        uptime.append("since " + time.strftime("%Y-%m-%d %H:%M", time.localtime(m.start_time)))
    if restarted:
        uptime.append("restarted since the last look")
    lines = line("Uptime", uptime)

    connections = [
        f"{_number(m.connections_open)} open",
        f"{_number(m.connections_accepted)} accepted",
        f"{_number(m.connections_closed)} closed",
    ]
    if previous is not None:
        rate = _rate_of(m.connections_accepted, previous.connections_accepted, interval)
        connections.append(f"{'-' if rate is None else _rate(rate)} new/s")
    lines += line("Connections", connections)

    total = m.requests_total
    requests = [f"{_number(total)} total"]
    if previous is not None:
        rate = _rate_of(total, previous.requests_total, interval)
        requests.append(f"{'-' if rate is None else _rate(rate)} req/s")
    if total is not None and m.uptime is not None and m.uptime >= 1:  # an average over 0.1s means little
        requests.append(f"avg {_rate(total / m.uptime)} req/s")
    lines += line("Requests", requests)

    by_status = m.requests_by_status
    if by_status is None:
        lines += line("Responses", ["-"])
    else:
        shown = [s for s, n in by_status.items() if n or s in ("2xx", "3xx", "4xx", "5xx")]
        shown.sort(key=lambda s: (s not in STATUS_CLASSES, s))
        lines += line("Responses", [f"{s} {by_status[s]:,}" for s in shown])

    traffic = []
    for word, attr in (("in", "received_bytes"), ("out", "sent_bytes")):
        value: int | None = getattr(m, attr)
        item = f"{word} {_bytes(value)}"
        if previous is not None:
            rate = _rate_of(value, getattr(previous, attr), interval)
            item += f" ({'-' if rate is None else _bytes(rate)}/s)"
        traffic.append(item)
    lines += line("Traffic", traffic)

    errors = [f"parse errors {_number(m.parse_errors)}"]
    errors.append(_kinds("limit hits", m.limit_hits))
    errors.append(_kinds("timeouts", m.timeouts))
    errors.append(f"handler exceptions {_number(m.handler_exceptions)}")
    if m.internal_errors:
        errors.append(f"internal errors {m.internal_errors:,}")
    lines += line("Errors", errors)
    return lines


def _kinds(label: str, counts: Mapping[str, int] | None) -> str:
    """``timeouts 0``, or the non-zero kinds by name: ``timeouts header_timeout 2, body_timeout 1``."""
    if counts is None:
        return f"{label} -"
    nonzero = [f"{kind} {n:,}" for kind, n in counts.items() if n]
    return f"{label} {', '.join(nonzero)}" if nonzero else f"{label} 0"


@dataclass(frozen=True, slots=True)
class _Row:
    """One bar of a histogram chart."""

    upper: float
    lower: float
    count: int


def _merge_pairs(buckets: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """Merge adjacent buckets two by two, aligned so merged bounds fall on octaves (2**k - 1 ns)."""
    best: list[tuple[float, int]] = []
    best_score = -1
    for offset in (0, 1):
        merged = buckets[:offset]
        for i in range(offset, len(buckets), 2):
            pair = buckets[i : i + 2]
            merged.append((pair[-1][0], sum(count for _bound, count in pair)))
        score = sum(1 for bound, _count in merged if _is_octave(bound))
        if score > best_score:
            best, best_score = merged, score
    return best


def _is_octave(bound: float) -> bool:
    ns = round(bound * 1e9) + 1
    return ns > 0 and ns & (ns - 1) == 0


def _rows(h: Histogram) -> list[_Row]:
    """Bars from the first to the last non-empty bucket, merged until at most ``_MAX_ROWS`` remain.

    Merging works on the whole bucket list, not only the visible part, so the rows
    of a watched screen do not jump between alignments from one redraw to the next.
    """
    finite = [(b, c) for b, c in zip(h.bounds, h.counts, strict=True) if b != math.inf]
    overflow = sum(c for b, c in zip(h.bounds, h.counts, strict=True) if b == math.inf)
    while True:
        rows: list[_Row] = []
        lower = 0.0
        for bound, count in finite:
            rows.append(_Row(bound, lower, count))
            lower = bound
        if overflow:
            rows.append(_Row(math.inf, lower, overflow))
        used = [i for i, row in enumerate(rows) if row.count]
        rows = rows[used[0] : used[-1] + 1] if used else []
        if len(rows) <= _MAX_ROWS or len(finite) <= 1:
            return rows
        finite = _merge_pairs(finite)


def _rank(total: int, numerator: int, denominator: int) -> int:
    """The 1-based rank of a percentile, as the server computes it: ceil(q * n), at least 1."""
    return max(1, -(-total * numerator // denominator))


def _bound_label(row: _Row, g: _Glyphs) -> str:
    if row.upper == math.inf:
        return g.more_than + _duration(row.lower, g)
    return g.at_most + _duration(row.upper, g)


def _estimate(h: Histogram, stat: str, g: _Glyphs) -> str:
    """A header value: the server's own figure, else a bucket bound (``≤ 1.02ms``)."""
    if stat in h.stats:
        return _duration(h.stats[stat], g)
    total = h.count
    if stat == "max":
        rank = total
    else:
        percent = float(stat[1:])
        rank = _rank(total, round(percent * 10), 1000)
    seen = 0
    lower = 0.0
    for bound, count in zip(h.bounds, h.counts, strict=True):
        seen += count
        if seen >= rank:
            if bound == math.inf:
                return g.more_than.strip() + _duration(lower, g)
            return g.at_most.strip() + _duration(bound, g)
        lower = bound
    return "-"


def _histogram_lines(key: str, h: Histogram, width: int, g: _Glyphs) -> list[str]:
    title, noun = _HISTOGRAM_TITLES.get(key, (key.replace("_", " ").capitalize() + " duration", "samples"))
    total = h.count
    if total == 0:
        return [f"{title}  no data yet"]
    items = [f"{total:,} {noun}"] + [f"{stat} {_estimate(h, stat, g)}" for stat in _HEADER_STATS]
    lines = _wrap(title, items, width, len(title) + 2, "  ")

    rows = _rows(h)
    labels = [_bound_label(row, g) for row in rows]
    marks = [""] * len(rows)
    for name, numerator, denominator in _MARKS:
        rank, seen = _rank(total, numerator, denominator), 0
        for i, row in enumerate(rows):
            seen += row.count
            if seen >= rank:
                marks[i] = (marks[i] + " " + name) if marks[i] else g.mark + name
                break
    counts = [_count_text(row.count, 13) for row in rows]
    label_w = max(map(len, labels))
    count_w = max(map(len, counts))
    mark_w = max(map(len, marks))
    bar_w = max(width - (2 + label_w + 1 + 1 + count_w + 2 + 6 + (2 + mark_w if mark_w else 0)), 4)
    bar_w = min(bar_w, _MAX_BAR)
    biggest = max(row.count for row in rows)
    for label, row, count, mark in zip(labels, rows, counts, marks, strict=True):
        share = row.count / total * 100
        percent = "<0.1%" if 0 < share < 0.05 else f"{share:.1f}%"
        bar = _bar(row.count / biggest, bar_w, g)
        line = f"  {label:>{label_w}} {_ljust(bar, bar_w)} {count:>{count_w}}  {percent:>6}"
        lines.append(line + (f"  {mark}" if mark else ""))
    return lines


def _bar(fraction: float, cells: int, g: _Glyphs) -> str:
    """A bar ``fraction`` of ``cells`` long, to 1/8 of a cell with block glyphs; never empty if > 0."""
    steps = len(g.eighths)
    units = round(fraction * cells * steps)
    if fraction > 0 and units == 0:
        units = 1
    full, part = divmod(units, steps)
    return g.eighths[-1] * full + (g.eighths[part - 1] if part else "")


def _route_lines(
    m: MetricsPage, previous: MetricsPage | None, interval: float | None, width: int, g: _Glyphs
) -> list[str]:
    if m.requests is None:
        return []
    routes = m.routes
    if not routes:
        return ["Top routes  no requests yet"]
    total = sum(r.count for r in routes)
    shown = routes[:_TOP_ROUTES]
    before = {(r.method, r.route): r.count for r in previous.routes} if previous is not None else None

    methods = [_clean(r.method, g is _ASCII) for r in shown]
    counts = [_count_text(r.count, 13) for r in shown]
    shares = [_share(r.count, total) for r in shown]
    rates: list[str] = []
    if before is not None:
        for r in shown:
            rate = _rate_of(r.count, before.get((r.method, r.route), 0), interval)
            rates.append("-" if rate is None else _rate(rate))
    flags = [
        " ".join(f"{s} {_count_text(n, 9)}" for s, n in sorted(r.by_status.items()) if s != "2xx")
        for r in shown
    ]

    method_w = min(max(map(len, methods)), 9)
    count_w = max(len("requests"), *map(len, counts))
    rate_w = max(len("req/s"), *map(len, rates)) if rates else 0
    flag_w = max(map(len, flags))
    fixed = 2 + method_w + 2 + 2 + count_w + 2 + 6 + (2 + rate_w if rates else 0)
    room = width - fixed
    if flag_w:
        flag_w = min(flag_w, max(room - 2 - 16, 0))
    route_w = max(room - (2 + flag_w if flag_w else 0), 8)

    def columns(left: str, count: str, rate: str, share: str, flag: str) -> str:
        text = f"{_ljust(left, 2 + method_w + 2 + route_w)}  {count:>{count_w}}"
        if rates:
            text += f"  {rate:>{rate_w}}"
        text += f"  {share:>6}"
        if flag_w and flag:
            text += "  " + _truncate(flag, flag_w, g.ellipsis)
        return text

    lines = [columns("Top routes", "requests", "req/s", "share", "")]
    for i, r in enumerate(shown):
        route = _truncate(_clean(r.route, g is _ASCII), route_w, g.ellipsis)
        left = f"  {_ljust(_truncate(methods[i], method_w, g.ellipsis), method_w)}  {route}"
        lines.append(columns(left, counts[i], rates[i] if rates else "", shares[i], flags[i]))
    hidden = routes[_TOP_ROUTES:]
    if hidden:
        rest = sum(r.count for r in hidden)
        lines.append(
            f"  {g.ellipsis} {len(hidden):,} more route{'s' if len(hidden) > 1 else ''}, "
            f"{rest:,} requests ({_share(rest, total).strip()})"
        )
    return lines


def _share(count: int, total: int) -> str:
    share = count / total * 100 if total else 0.0
    return "<0.1%" if 0 < share < 0.05 else f"{share:.1f}%"


def render_error(
    message: str,
    *,
    every: float,
    width: int = 80,
    ascii_only: bool = False,
    url: str = "",
    version: str | None = None,
    last_ok: float | None = None,
    now: float | None = None,
) -> str:
    """What ``--watch`` shows while the server cannot be read: the error, and that it keeps trying.

    ``every`` is the retry interval in seconds, ``version`` the server's from the
    last page read and ``last_ok`` (Unix time) when that was; the other
    arguments are :func:`render`'s.
    """
    g = _ASCII if ascii_only else _UNICODE
    lines = _title(version, url, width, g, now)
    lines += textwrap.wrap(
        "error: " + _clean(message, ascii_only),
        width=width,
        subsequent_indent="  ",
        break_on_hyphens=False,
    )
    retry = f"retrying every {every:g}s"
    if last_ok is not None:
        retry += f"; last data at {time.strftime('%H:%M:%S', time.localtime(last_ok))}"
    lines += ["", retry]
    return "\n".join(_truncate(_clean(line, ascii_only), width, g.ellipsis) for line in lines)

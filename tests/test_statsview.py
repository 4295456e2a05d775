"""``cyclehttp stats``: drawing a metrics page, and the command against a real HTTP server.

The metrics pages are written by :func:`test_metricsclient.metrics_page` from a few
figures, in the format of the server's metrics endpoint, and served by
:func:`test_metricsclient.serve`, so the tests do not depend on the exporter's code.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Iterator

import pytest
from test_metricsclient import (
    GARBAGE,
    OLDER_SERVER_OMITS,
    PROXY_VARIABLES,
    Page,
    Served,
    free_port,
    metrics_page,
    realistic_page,
    serve,
)

from cyclehttp.clock import stats_view as statsview
from cyclehttp.clock.metrics_reader import MetricsPage, parse
from cyclehttp.clock.stats_view import render
from cyclehttp.serving import stats_command
from cyclehttp.serving.stats_command import main

NOW = 1_795_558_412.0
"""A fixed clock for the title line."""


@pytest.fixture
def sample() -> MetricsPage:
    return parse(metrics_page(realistic_page()))


def screen_lines(text: str) -> list[str]:
    return text.split("\n")


# --- render ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120])
@pytest.mark.parametrize("ascii_only", [False, True])
def test_render_fits_width(sample: MetricsPage, width: int, ascii_only: bool) -> None:
    url = "http://127.0.0.1:8000/metrics"
    screen = render(sample, width=width, ascii_only=ascii_only, url=url, now=NOW)
    lines = screen_lines(screen)
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    assert lines[0].endswith(time.strftime("%H:%M:%S", time.localtime(NOW)))
    assert len(lines[0]) == width


def test_render_shows_percentiles_and_bars(sample: MetricsPage) -> None:
    screen = render(sample, width=80, url="http://127.0.0.1:8000/metrics", now=NOW)
    assert screen.startswith("cyclehttp 0.1.0 · http://127.0.0.1:8000/metrics ")
    for heading in ("Request latency", "Handler time", "Connection lifetime", "Top routes"):
        assert heading in screen
    request = sample.histograms["request"]
    for stat in ("p50", "p90", "p99", "p99.9", "max"):
        assert f"{stat} " in screen
    assert f"p50 {statsview._duration(request.stats['p50'], statsview._UNICODE)}" in screen
    assert "█" in screen
    assert re.search("[▏▎▍▌▋▊▉]", screen)
    assert "≤ " in screen
    assert "µs" in screen
    # counts and shares with thousands separators
    assert "1,207,415 total" in screen
    assert "2xx 1,203,950" in screen
    assert "in 120.3 MB" in screen
    assert "out 1.5 GB" in screen
    assert "2h13m" in screen
    assert "max_body_size 1" in screen
    assert "header_timeout 2, keep_alive_timeout 10" in screen
    assert "max_url_length" not in screen  # zero kinds are not listed
    assert "handler exceptions 42" in screen
    assert "avg 151 req/s" in screen


def chart_rows(screen: str, title: str) -> list[str]:
    """The bar rows under the header of the histogram ``title``."""
    lines = screen_lines(screen)
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 1 :]:
        if not line:
            break
        if line.lstrip().startswith(("≤", ">", "<=")):
            rows.append(line)
    return rows


def row_bounds(row: str) -> float:
    """The upper bound of a row in seconds, from its label (``≤ 65.5µs``)."""
    match = re.match(r"\s*(?:≤|<=) ([\d.]+)(ns|µs|us|ms|s)\b", row)
    assert match is not None, row
    scale = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]
    return float(match.group(1)) * scale


@pytest.mark.parametrize("ascii_only", [False, True])
def test_render_marks_the_rows_of_p50_and_p99(sample: MetricsPage, ascii_only: bool) -> None:
    screen = render(sample, width=80, now=NOW, ascii_only=ascii_only)
    marker = "<" if ascii_only else "◀"
    for title, key in (("Request latency", "request"), ("Handler time", "handler")):
        rows = chart_rows(screen, title)
        assert 3 <= len(rows) <= 14
        p50_rows = [r for r in rows if re.search(rf"{marker} p50\b", r)]
        p99_rows = [r for r in rows if re.search(rf"{marker} (p50 )?p99$", r)]
        assert len(p50_rows) == len(p99_rows) == 1
        stats = sample.histograms[key].stats
        # the marked row is the first whose upper bound is at or above the percentile
        # (labels are rounded to 3 digits: allow for that)
        for marked, value in ((p50_rows[0], stats["p50"]), (p99_rows[0], stats["p99"])):
            index = rows.index(marked)
            assert row_bounds(marked) >= value * 0.995
            if index:
                assert row_bounds(rows[index - 1]) < value * 1.005


def test_render_merges_wide_histograms_into_octaves() -> None:
    wide = [(2**k, 1000) for k in range(11, 35)]  # 2µs .. 17s: ~48 half-octave rows
    metrics = parse(metrics_page(realistic_page(histograms={"request": wide})))
    rows = chart_rows(render(metrics, width=80, now=NOW), "Request latency")
    assert 7 <= len(rows) <= 14
    assert sum(int(re.findall(r"([\d,]+) +[\d.<]+%", r)[0].replace(",", "")) for r in rows) == 24_000
    # merged twice: every row spans two octaves, from an octave bound to an octave bound
    narrow = [(2**k - 1, 1000) for k in range(11, 17)]  # 2µs .. 65µs: 11 rows, no merging
    metrics = parse(metrics_page(realistic_page(histograms={"request": narrow})))
    rows = chart_rows(render(metrics, width=80, now=NOW), "Request latency")
    assert len(rows) == 11
    assert rows[0].lstrip().startswith("≤ 2.05µs")
    assert rows[-1].lstrip().startswith("≤ 65.5µs")


def test_render_overflow_bucket_and_huge_numbers() -> None:
    huge = 123_456_789_012_345_678
    page = realistic_page(
        accepted=huge,
        closed=huge - 5,
        received=huge * 1000,
        sent=huge,
        requests=[("GET", "/", "2xx", huge), ("GET", "/" + "very-long-segment/" * 12, "5xx", huge // 3)],
        histograms={"request": [(1_000, huge), (100 * 10**9, huge // 1000)]},  # 100s is past the last bound
    )
    metrics = parse(metrics_page(page))
    for width in (60, 80, 120):
        for ascii_only in (False, True):
            screen = render(metrics, width=width, ascii_only=ascii_only, now=NOW)
            assert max(map(len, screen_lines(screen))) <= width
    screen = render(metrics, width=80, now=NOW)
    assert "123,456,789,012,345,678 accepted" in screen
    assert "123.5 ZB" in screen or "PB" in screen or "EB" in screen
    assert "> 1m09s" in screen  # the +Inf bucket
    assert "/very-long-segment/very-long" in screen and "…" in screen
    ascii_screen = render(metrics, width=80, now=NOW, ascii_only=True)
    assert "..." in ascii_screen


def test_render_ascii_is_pure_ascii(sample: MetricsPage) -> None:
    page = realistic_page(
        requests=[("GET", "/caf\u00e9/\u65e5\u672c", "2xx", 10), ("GET", "/evil\x1b[2J\nx", "2xx", 5)]
    )
    metrics = parse(metrics_page(page))
    for m in (sample, metrics):
        screen = render(m, width=80, ascii_only=True, url="http://h:1/metrics", now=NOW)
        assert screen.isascii()
        assert "\x1b" not in screen
        assert "#" in screen
        assert "<= " in screen
        assert "us" in screen
    screen = render(metrics, width=80, ascii_only=True, now=NOW)
    assert "/caf\\xe9/\\u65e5\\u672c" in screen


def test_render_unicode_glyphs_are_single_width_and_page_text_is_sanitised() -> None:
    page = realistic_page(
        requests=[("GET", "/\u65e5\u672c" * 30, "2xx", 10), ("GET", "/evil\x1b[2J\x07", "2xx", 5)]
    )
    metrics = parse(metrics_page(page))
    for width in (60, 80):
        screen = render(metrics, width=width, url="http://h:1/metrics", now=NOW)
        assert "\x1b" not in screen and "\x07" not in screen
        for line in screen_lines(screen):
            cells = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
            assert cells <= width
        used = {c for c in screen if not c.isascii()} - set("\u65e5\u672c")
        assert used <= set(statsview.UNICODE_CHARS)
        assert all(unicodedata.east_asian_width(c) not in ("W", "F") for c in used)


def test_render_rates_with_previous() -> None:
    before = parse(metrics_page(realistic_page()))
    page = realistic_page(
        uptime=8014.5,
        accepted=10_234 + 50,
        closed=10_222 + 48,
        received=120_300_000 + 2_000_000,
        sent=1_453_000_000 + 30_000_000,
        requests=[("GET", "/", "2xx", 1_200_000 + 3_000), ("GET", "/error", "5xx", 42)],
    )
    after = parse(metrics_page(page))
    screen = render(after, previous=before, interval=2.0, now=NOW)
    assert "25.0 new/s" in screen
    assert "in 122.3 MB (1.0 MB/s)" in screen
    assert "out 1.5 GB (15.0 MB/s)" in screen
    assert "req/s" in screen.split("Top routes")[1].split("\n")[0]
    # the total went down (routes missing from the second page): no negative rate
    assert re.search(r"Requests .* - req/s", screen)
    lines = screen_lines(screen)
    root = next(line for line in lines if re.match(r"\s+GET\s+/\s", line))
    assert " 1,500 " in root  # (1,203,000 - 1,200,000) / 2s
    without = render(after, now=NOW)
    assert "/s)" not in without and "new/s" not in without
    assert "avg " in without
    # a restart (uptime went down) shows no rates, and says so
    restarted = render(before, previous=after, interval=2.0, now=NOW)
    assert "restarted" in restarted
    assert "/s)" not in restarted


def test_render_request_rate() -> None:
    before = parse(metrics_page(realistic_page()))
    after = parse(metrics_page(realistic_page(requests=[("GET", "/", "2xx", 2_000_000)])))
    before_total = before.requests_total
    assert before_total is not None
    screen = render(after, previous=before, interval=4.0, now=NOW)
    assert f"{_rate((2_000_000 - before_total) / 4)} req/s" in screen


def _rate(value: float) -> str:
    return statsview._rate(value)


def test_render_empty_histograms_show_no_data_yet() -> None:
    metrics = parse(metrics_page(Page()))
    screen = render(metrics, width=80, now=NOW)
    assert screen.count("no data yet") == 3
    assert "Request latency  no data yet" in screen


def test_render_with_no_data_at_all() -> None:
    screen = render(MetricsPage(), width=60, now=NOW)
    lines = screen_lines(screen)
    assert lines[0].startswith("cyclehttp ")
    assert all(len(line) <= 60 for line in lines)
    assert "Uptime       -" in screen


def test_render_many_routes() -> None:
    requests = [("GET", f"/r{i}", "2xx", 100 + i) for i in range(12)]
    metrics = parse(metrics_page(realistic_page(requests=requests)))
    screen = render(metrics, width=80, now=NOW)
    routes = screen.split("Top routes")[1].splitlines()[1:]
    assert [line.split()[1] for line in routes[:8]] == [f"/r{i}" for i in range(11, 3, -1)]
    assert "… 4 more routes, 406 requests" in screen


def test_render_flags_non_2xx(sample: MetricsPage) -> None:
    screen = render(sample, width=80, now=NOW)
    lines = screen_lines(screen)
    error = next(line for line in lines if " /error " in line)
    assert error.endswith("5xx 42")
    users = next(line for line in lines if "/users/{user_id:int}" in line)
    assert users.endswith("4xx 12")
    root = next(line for line in lines if re.match(r"\s+GET\s+/\s", line))
    assert root.endswith("%")


def test_render_missing_families() -> None:
    metrics = parse(metrics_page(realistic_page(omit=OLDER_SERVER_OMITS)))
    screen = render(metrics, now=NOW)
    assert "Handler time" not in screen
    assert "Top routes" not in screen
    assert "p50 " in screen  # estimated from the buckets
    assert re.search(r"Requests +- total", screen)
    assert "limit hits -" in screen
    for width in (60, 80, 120):
        assert max(map(len, screen_lines(render(metrics, width=width, now=NOW)))) <= width


def test_render_garbage_page_does_not_crash() -> None:
    render(parse(GARBAGE), now=NOW)


def test_render_empty_requests_family_shows_no_requests_yet() -> None:
    metrics = parse(metrics_page(Page(requests=())))
    assert "no requests yet" in render(metrics, now=NOW)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (850e-9, "850ns"),
        (45.2e-6, "45.2µs"),
        (999.9e-6, "1.00ms"),
        (1.25e-3, "1.25ms"),
        (3.1, "3.10s"),
        (59.99, "1m00s"),
        (125, "2m05s"),
        (4398.05, "1h13m"),
        (200_000, "2d07h"),
        (None, "-"),
        (math.inf, "-"),
    ],
)
def test_durations(seconds: float | None, text: str) -> None:
    assert statsview._duration(seconds, statsview._UNICODE) == text


def test_sizes_and_uptimes() -> None:
    assert statsview._bytes(512) == "512 B"
    assert statsview._bytes(120_300_000) == "120.3 MB"
    assert statsview._bytes(999_990) == "1.0 MB"
    assert statsview._uptime(45.9) == "45s"
    assert statsview._uptime(8012.5) == "2h13m"
    assert statsview._duration(45.2e-6, statsview._ASCII) == "45.2us"


# --- main against a real HTTP server ------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; the tests talk to 127.0.0.1 directly."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[Served]:
    with serve() as served:
        yield served


def test_main_prints_one_screen(server: Served, capsys: pytest.CaptureFixture[str]) -> None:
    address = server.url.removeprefix("http://")
    assert main([address, "--width", "80"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.rstrip("\n").split("\n")
    assert lines[0].startswith(f"cyclehttp 0.1.0 · {server.url}/metrics ")
    assert all(len(line) <= 80 for line in lines)
    for stat in ("p50", "p90", "p99", "p99.9", "max"):
        assert f" {stat} " in out
    assert "█" in out
    assert "◀ p50" in out


def test_main_ascii_and_default_width(
    server: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main([server.url, "--ascii"]) == 0
    out = capsys.readouterr().out
    assert out.isascii()
    assert "#" in out and "< p50" in out
    assert max(map(len, out.splitlines())) == 120  # capped
    monkeypatch.setenv("COLUMNS", "30")
    assert main([server.url, "--ascii"]) == 0
    assert max(map(len, capsys.readouterr().out.splitlines())) == 60  # at least 60


def test_main_falls_back_to_ascii_when_stdout_cannot_encode(
    server: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Latin1Out:
        encoding = "latin-1"

        def __init__(self) -> None:
            self.chunks: list[str] = []

        def write(self, text: str) -> int:
            text.encode(self.encoding)
            self.chunks.append(text)
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    fake = Latin1Out()
    monkeypatch.setattr("sys.stdout", fake)
    assert main([server.url, "--width", "80"]) == 0
    out = "".join(fake.chunks)
    assert out.isascii() and "#" in out


def test_main_404_is_exit_1(server: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([server.url + "/not-metrics"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("cyclehttp stats: error: ")
    assert "404" in err and "--metrics-path /not-metrics" in err


def test_main_unreachable_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main([f"127.0.0.1:{port}"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"cyclehttp stats: error: cannot reach http://127.0.0.1:{port}/metrics: ")
    assert err.endswith("is the server running with --metrics-path /metrics?\n")


def test_main_bad_url_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ftp://x"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("cyclehttp stats: error: unsupported URL scheme 'ftp'")


def test_main_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["h:1", "--interval", "0"], ["h:1", "--width", "10"], ["h:1", "--width", "wide"], []):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "cyclehttp stats: error:" in capsys.readouterr().err


class StopAfter:
    """A stand-in for ``time.sleep`` that runs ``actions`` between redraws, then stops with Ctrl-C."""

    def __init__(self, *actions: object) -> None:
        self.actions = list(actions)
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        assert 0 <= seconds <= 0.5
        self.calls += 1
        if not self.actions:
            raise KeyboardInterrupt
        action = self.actions.pop(0)
        if callable(action):
            action()


def test_main_watch_redraws_until_ctrl_c(
    server: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def more_traffic() -> None:
        server.pages["/metrics"] = (200, metrics_page(realistic_page(uptime=8013.0, accepted=10_334)))

    sleep = StopAfter(more_traffic, None)
    monkeypatch.setattr(stats_command, "_sleep", sleep)
    assert main([server.url, "--watch", "--interval", "0.5", "--width", "80"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert sleep.calls == 3
    screens = out.split("\n\ncyclehttp ")
    assert len(screens) == 3  # not a TTY: screens separated by a blank line, no ANSI codes
    assert "\x1b" not in out
    assert "new/s" not in screens[0]
    assert "new/s" in screens[1] and "req/s" in screens[1]


def test_main_watch_on_a_tty_clears_the_screen(
    server: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats_command, "_sleep", StopAfter(None))
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main([server.url, "--watch", "--width", "80", "--interval", "0.2"]) == 0
    out = capsys.readouterr().out
    assert out.count("\x1b[H\x1b[2J") == 2
    assert out.startswith("\x1b[H\x1b[2Jcyclehttp 0.1.0")


def test_main_watch_shows_errors_and_keeps_retrying(
    server: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = server.pages["/metrics"]

    def break_it() -> None:
        server.pages["/metrics"] = (500, "oops\n")

    def fix_it() -> None:
        server.pages["/metrics"] = good

    monkeypatch.setattr(stats_command, "_sleep", StopAfter(break_it, None, fix_it))
    assert main([server.url, "--watch", "--width", "60", "--interval", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    screens = out.split("\n\ncyclehttp")
    assert len(screens) == 4
    assert "Request latency" in screens[0]
    for screen in screens[1:3]:
        assert "error: " in screen and "answered 500" in screen
        assert "retrying every 0.5s; last data at " in screen
    assert "Request latency" in screens[3]
    assert all(len(line) <= 60 for line in out.splitlines())


def test_main_watch_fails_fast_when_the_first_fetch_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats_command, "_sleep", StopAfter())
    assert main([f"127.0.0.1:{free_port()}", "--watch"]) == 1
    assert capsys.readouterr().err.startswith("cyclehttp stats: error: cannot reach")

"""The server's own figures: counters after known traffic, timings, the metrics page, the exit summary.

Every figure is checked against what the test itself sent and received over real sockets:
bytes are counted on the client side, responses are read one by one, and the metrics page
is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cyclehttp import App, HTTPError, Request, Response, RouteError
from cyclehttp.clock.histogram import CAP_NS
from cyclehttp.clock.metrics_page import CONNECTION_BOUNDS, REQUEST_BOUNDS, bucket_bounds
from cyclehttp.clock.stats import LIMITS, PARSE_ERROR, TIMEOUTS, Stats, StatsSnapshot, format_duration
from cyclehttp.serving.server import summary
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection, RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]
Connect = Callable[[TestServer], Awaitable[RawConnection]]


def build_app(**options: object) -> App:
    app = App(**options)  # type: ignore[arg-type]
    app.add_route("GET", "/", Response.text("hello"))
    app.add_route("POST", "/", lambda request: request.body)

    @app.get("/users/{user_id:int}")
    def user(request: Request) -> dict[str, int]:
        return {"id": request.params["user_id"]}

    @app.get("/error")
    def error(request: Request) -> str:
        raise RuntimeError("boom")

    @app.get("/teapot")
    def teapot(request: Request) -> str:
        raise HTTPError(418)

    @app.get("/sleep")
    async def sleep(request: Request) -> str:
        await asyncio.sleep(0.02)
        return "slept"

    return app


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    return ("\r\n".join([f"{method} {path} HTTP/1.1", "Host: t", *headers]) + "\r\n\r\n").encode()


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def route_counts(stats: StatsSnapshot) -> dict[tuple[str, str, str], int]:
    return {(r.method, r.route, r.status): r.count for r in stats.requests_by_route}


class Traffic:
    """What the client sent and received, to compare with the server's counts."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.responses: list[RawResponse] = []

    async def send(self, conn: RawConnection, data: bytes) -> None:
        self.sent += len(data)
        await conn.send(data)

    async def read(self, conn: RawConnection, n: int = 1, *, head: bool = False) -> list[RawResponse]:
        responses = [await conn.read_response(head=head) for _ in range(n)]
        self.received += sum(len(r.raw) for r in responses)
        self.responses += responses
        return responses

    async def read_until_closed(self, conn: RawConnection) -> bytes:
        data = await conn.read_until_closed(timeout=5)
        self.received += len(data)
        return data


async def test_counters_after_a_known_sequence(cyclehttp_server: ServerFactory, connect: Connect) -> None:
    server = await cyclehttp_server(build_app(), max_header_size=1024, max_body_size=100, header_timeout=1)
    traffic = Traffic()

    conn = await connect(server)
    await traffic.send(conn, get("/") * 3)
    await traffic.read(conn, 3)
    await traffic.send(conn, get("/", method="HEAD"))
    await traffic.read(conn, head=True)
    await traffic.send(conn, get("/users/1") + get("/users/2") + get("/error") + get("/teapot"))
    await traffic.read(conn, 4)
    await traffic.send(conn, get("/sleep") + get("/nowhere") + get("/users/x") + get("/", method="DELETE"))
    await traffic.read(conn, 4)
    body = b"x" * 10
    await traffic.send(conn, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n" + body)
    await traffic.read(conn)
    assert [r.status for r in traffic.responses] == [
        200,
        200,
        200,
        200,
        200,
        200,
        500,
        418,
        200,
        404,
        404,
        405,
        200,
    ]

    # Bad input, each on its own connection: every one is answered and counted by kind.
    bad_inputs = [
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",  # 400, parse error
        b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 2000 + b"\r\n\r\n",  # 431
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n",  # 413
        b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",  # 501, parse error
        b"GET / HTTP/1.1\r\nHost: t\r\n",  # stalls: 408 after the header timeout
    ]
    for data in bad_inputs:
        bad = await connect(server)
        await traffic.send(bad, data)
        answer = await traffic.read_until_closed(bad)
        assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5")
    await conn.close()
    await wait_for(lambda: server.stats.connections_open == 0)

    stats = server.stats
    assert route_counts(stats) == {
        ("GET", "/", "2xx"): 4,
        ("POST", "/", "2xx"): 1,
        ("GET", "/users/{user_id:int}", "2xx"): 2,
        ("GET", "/error", "5xx"): 1,
        ("GET", "/teapot", "4xx"): 1,
        ("GET", "/sleep", "2xx"): 1,
        ("<any>", "<unmatched>", "4xx"): 2,
        ("<other>", "/", "4xx"): 1,
        ("<any>", "<rejected>", "4xx"): 4,
        ("<any>", "<rejected>", "5xx"): 1,
    }
    assert dict(stats.requests_by_status) == {"1xx": 0, "2xx": 8, "3xx": 0, "4xx": 8, "5xx": 2}
    assert stats.requests == 18
    assert stats.parse_errors == 2
    assert dict(stats.limit_hits) == {
        "max_header_size": 1,
        "max_url_length": 0,
        "max_body_size": 1,
        "max_connections": 0,
    }
    assert stats.timeouts["header_timeout"] == 1
    assert stats.handler_exceptions == 1
    assert stats.internal_errors == 0
    assert stats.connections_accepted == stats.connections_closed == 6
    assert stats.bytes_received == traffic.sent
    assert stats.bytes_sent == traffic.received
    # Every response was timed; handlers (users x2, error, teapot, sleep, echo) too.
    assert stats.request_latency.count == 18
    assert stats.handler_time.count == 6
    # /sleep awaits 20 ms inside its handler (uvloop's millisecond timers may end it ~1 ms short)
    assert stats.handler_time.max_ns >= 18_000_000
    assert stats.request_latency.max_ns >= 1_000_000_000  # the 408 waited for the 1 s header timeout
    assert stats.connection_lifetime.count == 6


async def test_pipelined_requests_answered_in_one_write_are_each_timed(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(build_app())
    conn = await connect(server)
    await conn.send(get("/") * 16)
    await conn.read_responses(16)
    stats = server.stats
    assert stats.requests == 16
    assert stats.request_latency.count == 16
    assert 0 < stats.request_latency.min_ns <= stats.request_latency.max_ns


async def test_sync_handler_times_inside_and_beyond_the_fast_table(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    """A quick handler is bucketed through histogram.FAST_INDEX; one of 2 ms is past the
    table's 262 us and is bucketed the exact way: both are counted, in their own buckets."""
    app = build_app()

    @app.get("/block")
    def block(request: Request) -> str:
        time.sleep(0.002)  # blocks the loop on purpose: a slow sync handler
        return "done"

    server = await cyclehttp_server(app)
    conn = await connect(server)
    await conn.send(get("/users/1"))
    await conn.read_responses(1)
    await conn.send(get("/block"))
    await conn.read_responses(1)
    stats = server.stats
    assert stats.handler_time.count == stats.request_latency.count == 2
    assert stats.handler_time.min_ns < 262_144 <= 2_000_000 <= stats.handler_time.max_ns
    assert stats.request_latency.max_ns >= 2_000_000
    assert stats.handler_time.max_ns <= stats.request_latency.max_ns


async def test_timing_off_keeps_the_counters(cyclehttp_server: ServerFactory, connect: Connect) -> None:
    server = await cyclehttp_server(build_app(), timing=False)
    conn = await connect(server)
    await conn.send(get("/") + get("/users/3"))
    await conn.read_responses(2)
    await conn.close()
    await wait_for(lambda: server.stats.connections_closed == 1)
    stats = server.stats
    assert stats.requests == 2
    assert stats.request_latency.count == 0
    assert stats.handler_time.count == 0
    assert stats.connection_lifetime.count == 1
    assert stats.bytes_received > 0 and stats.bytes_sent > 0


async def test_keep_alive_timeout_and_connection_limit_are_counted(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(build_app(), keep_alive_timeout=1, max_connections=1)
    conn = await connect(server)
    await conn.send(get("/"))
    await conn.read_response()
    extra = await connect(server)
    refused = await extra.read_until_closed(timeout=5)
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert await conn.is_closed_by_peer(timeout=5)
    await wait_for(lambda: server.stats.connections_open == 0)
    stats = server.stats
    assert stats.timeouts["keep_alive_timeout"] == 1
    assert stats.limit_hits["max_connections"] == 1
    assert route_counts(stats)[("<any>", "<rejected>", "5xx")] == 1


async def test_reset_zeroes_everything_but_open_connections(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    app = build_app()
    server = await cyclehttp_server(app)
    conn = await connect(server)
    await conn.send(get("/") + get("/users/1") + get("/nowhere"))
    await conn.read_responses(3)
    assert app.stats.requests == 3
    app.reset_stats()
    stats = app.stats
    assert stats.requests == 0 and stats.requests_by_route == ()
    assert stats.request_latency.count == stats.handler_time.count == 0
    assert stats.bytes_received == stats.bytes_sent == 0
    assert stats.connections_open == 1
    await conn.send(get("/"))
    await conn.read_response()
    assert app.stats.requests == 1


# -- the metrics page ------------------------------------------------------------------------


def families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_metrics_page_is_valid_prometheus_text(
    cyclehttp_server: ServerFactory, connect: Connect
) -> None:
    server = await cyclehttp_server(build_app(), metrics_path="/metrics")
    conn = await connect(server)
    await conn.send(get("/") * 5 + get("/users/7") + get("/error") + get("/nowhere"))
    await conn.read_responses(8)
    await conn.close()
    await wait_for(lambda: server.stats.connections_closed == 1)

    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    parsed = {family.name: family for family in text_string_to_metric_families(response.text)}

    kinds = {name: family.type for name, family in parsed.items()}
    assert kinds == {
        "cyclehttp_info": "gauge",
        "cyclehttp_start_time_seconds": "gauge",
        "cyclehttp_uptime_seconds": "gauge",
        "cyclehttp_connections_accepted": "counter",
        "cyclehttp_connections_closed": "counter",
        "cyclehttp_connections_open": "gauge",
        "cyclehttp_requests": "counter",
        "cyclehttp_received_bytes": "counter",
        "cyclehttp_sent_bytes": "counter",
        "cyclehttp_parse_errors": "counter",
        "cyclehttp_limit_hits": "counter",
        "cyclehttp_timeouts": "counter",
        "cyclehttp_handler_exceptions": "counter",
        "cyclehttp_internal_errors": "counter",
        "cyclehttp_request_duration_seconds": "histogram",
        "cyclehttp_handler_duration_seconds": "histogram",
        "cyclehttp_connection_duration_seconds": "histogram",
        "cyclehttp_duration_stat_seconds": "gauge",
    }
    requests = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in parsed["cyclehttp_requests"].samples
    }
    assert requests == {
        ("GET", "/", "2xx"): 5,
        ("GET", "/users/{user_id:int}", "2xx"): 1,
        ("GET", "/error", "5xx"): 1,
        ("<any>", "<unmatched>", "4xx"): 1,
    }
    assert {s.labels["limit"] for s in parsed["cyclehttp_limit_hits"].samples} == set(LIMITS)
    assert {s.labels["timeout"] for s in parsed["cyclehttp_timeouts"].samples} == set(TIMEOUTS)
    assert parsed["cyclehttp_connections_closed"].samples[0].value == 1
    assert parsed["cyclehttp_handler_exceptions"].samples[0].value == 1

    for name, bounds, count in (
        ("cyclehttp_request_duration_seconds", REQUEST_BOUNDS, 8),
        ("cyclehttp_handler_duration_seconds", REQUEST_BOUNDS, 2),
        ("cyclehttp_connection_duration_seconds", CONNECTION_BOUNDS, 1),
    ):
        samples = parsed[name].samples
        buckets = [s for s in samples if s.name == name + "_bucket"]
        assert [s.labels["le"] for s in buckets[:-1]] == [repr(b / 1e9) for b in bounds]
        assert buckets[-1].labels["le"] == "+Inf"
        values = [s.value for s in buckets]
        assert values == sorted(values), "bucket counts are cumulative"
        assert values[-1] == count
        (total,) = [s.value for s in samples if s.name == name + "_count"]
        (seconds,) = [s.value for s in samples if s.name == name + "_sum"]
        assert total == count and seconds > 0
    stats = {
        (s.labels["histogram"], s.labels["stat"]): s.value
        for s in parsed["cyclehttp_duration_stat_seconds"].samples
    }
    assert len(stats) == 18
    for histogram in ("request", "handler", "connection"):
        row = [stats[(histogram, stat)] for stat in ("min", "p50", "p90", "p99", "p99.9", "max")]
        assert row == sorted(row) and row[0] > 0


async def test_metrics_page_counts_itself_and_answers_head(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(build_app(), metrics_path="/_cyclehttp/metrics")
    async with httpx.AsyncClient(timeout=5) as client:
        first = await client.get(server.url + "/_cyclehttp/metrics")
        head = await client.head(server.url + "/_cyclehttp/metrics")
        post = await client.post(server.url + "/_cyclehttp/metrics")
        second = await client.get(server.url + "/_cyclehttp/metrics")
    assert first.status_code == head.status_code == second.status_code == 200
    assert head.content == b""
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert 'cyclehttp_requests_total{method="GET",route="/_cyclehttp/metrics",status="2xx"} 2' in second.text


async def test_metrics_page_from_the_app_option(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(build_app(metrics_path="/stats"))
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(server.url + "/stats")
    assert response.status_code == 200 and "cyclehttp_requests_total" in response.text


async def test_no_metrics_page_unless_asked(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(build_app())
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(server.url + "/metrics")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("route", "metrics_path"),
    [
        ("/metrics", "/metrics"),  # the same static path
        ("/{page}", "/metrics"),  # a parameter route that matches it
        ("/{rest:path}", "/a/b"),
        ("/users/{user_id:int}", "/users/1"),
    ],
)
async def test_metrics_path_that_clashes_with_a_route_is_refused(
    cyclehttp_server: ServerFactory, route: str, metrics_path: str
) -> None:
    app = App([("GET", route, "user route")])
    with pytest.raises(RouteError, match="already served by the route"):
        await cyclehttp_server(app, metrics_path=metrics_path)


async def test_metrics_path_beside_routes_shadows_nothing(cyclehttp_server: ServerFactory) -> None:
    app = App([("GET", "/metrics/{name}", "user route"), ("POST", "/users/{user_id:int}", "posted")])
    server = await cyclehttp_server(app, metrics_path="/metrics")
    async with httpx.AsyncClient(timeout=5) as client:
        page = await client.get(server.url + "/metrics")
        user = await client.get(server.url + "/metrics/x")
        posted = await client.post(server.url + "/users/1")
    assert "cyclehttp_info" in page.text
    assert user.text == "user route"
    assert posted.text == "posted"


def test_cli_reports_a_metrics_path_clash_with_exit_status_2() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cyclehttp",
            "examples.hello:routes",
            "--port",
            "0",
            "--metrics-path",
            "/json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("cyclehttp: error: '/json' is already served by the route '/json'")


def test_cli_refuses_a_metrics_path_that_is_not_a_path() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "examples.hello:routes", "--metrics-path", "metrics"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "expected a path starting with '/'" in result.stderr


# -- units -----------------------------------------------------------------------------------


def test_refusals_are_counted_by_kind() -> None:
    stats = Stats()
    stats.refused(PARSE_ERROR, 400)
    stats.refused("max_body_size", 413)
    stats.refused("header_timeout", 408)
    stats.refused("max_connections", 503)
    snapshot = stats.snapshot()
    assert snapshot.parse_errors == 1
    assert snapshot.limit_hits["max_body_size"] == 1
    assert snapshot.limit_hits["max_connections"] == 1
    assert snapshot.timeouts["header_timeout"] == 1
    assert dict(snapshot.requests_by_status) == {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 3, "5xx": 1}


def test_bucket_bounds_are_histogram_edges() -> None:
    from cyclehttp.clock.histogram import bucket_index

    bounds = bucket_bounds(10, 13)
    assert bounds == (1023, 1535, 2047, 3071, 4095, 6143, 8191)
    for bound in (*REQUEST_BOUNDS, *CONNECTION_BOUNDS):
        assert bucket_index(bound) != bucket_index(bound + 1)
    assert CONNECTION_BOUNDS[-1] < CAP_NS


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0ns"),
        (850, "850ns"),
        (45_200, "45.2us"),
        (1_250_000, "1.25ms"),
        (3_100_000_000, "3.10s"),
        (999_999, "1.00ms"),  # rounding up carries into the next unit
        (3_000_000, "3.00ms"),
        (59.99e9, "1m00s"),
        (125e9, "2m05s"),
        (3 * 3600e9 + 7 * 60e9, "3h07m"),
        (2 * 86400e9 + 3 * 3600e9, "2d03h"),
        (None, "-"),
        (math.inf, "-"),
        (-1, "-"),
    ],
)
def test_format_duration(ns: float | None, text: str) -> None:
    assert format_duration(ns) == text


def test_format_duration_micro_sign() -> None:
    assert format_duration(45_200, micro="µ") == "45.2µs"


def test_exit_summary_line() -> None:
    stats = Stats()
    stats.connections_accepted = 3
    stats.connection_closed(2_000_000_000)
    stats.request_latency.record(40_000)
    stats.refused(PARSE_ERROR, 400)
    line = summary(stats.snapshot())
    assert line.startswith("stopped after ")
    assert ": 3 connections, 1 requests (1 4xx); request latency p50 " in line
    assert "connection lifetime p50 2" in line
    assert math.isfinite(stats.snapshot().uptime_seconds)


def test_exit_summary_is_logged_by_the_cli() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "cyclehttp", "examples.hello:routes", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = ""
        for line in server.stderr:  # the server logs where it listens, then the request
            if "listening on" in line:
                break
        url = line.split("listening on ", 1)[1].split()[0]
        assert httpx.get(url + "/", timeout=5).text == "Hello, World!"
        server.send_signal(signal.SIGTERM)
        _, rest = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    assert server.returncode == 0
    (line,) = [line for line in rest.splitlines() if "stopped after" in line]
    assert "1 connections, 1 requests (1 2xx); request latency p50 " in line


# -- cyclehttp stats against a live server ---------------------------------------------------


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cyclehttp",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cyclehttp_stats_draws_a_live_server(cyclehttp_server: ServerFactory, connect: Connect) -> None:
    server = await cyclehttp_server(build_app(), metrics_path="/metrics")
    conn = await connect(server)
    await conn.send(get("/") * 20 + get("/users/1") * 5 + get("/error") + get("/nowhere"))
    await conn.read_responses(27)
    await conn.close()
    await wait_for(lambda: server.stats.connections_closed == 1)

    status, out, err = await run_cli("stats", f"{server.host}:{server.port}", "--width", "80")
    assert status == 0, err
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert f"http://{server.host}:{server.port}/metrics" in lines[0]
    text = "\n".join(lines)
    for heading in ("Request latency", "Handler time", "Connection lifetime"):
        assert heading in text
    for percentile in ("p50", "p90", "p99", "p99.9", "max"):
        assert percentile in text
    assert "█" in text or "▏" in text  # bars
    assert "◀ p50" in text
    assert "GET" in text and "/users/{user_id:int}" in text
    assert "5xx" in text

    status, out, _ = await run_cli("stats", f"{server.url}/metrics", "--ascii", "--width", "60")
    assert status == 0
    assert out.isascii() and "#" in out and "< p50" in out
    assert all(len(line) <= 60 for line in out.splitlines())


async def test_cyclehttp_stats_on_a_server_without_metrics_exits_1(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(build_app())
    status, out, err = await run_cli("stats", server.url)
    assert status == 1
    assert out == ""
    assert err.startswith("cyclehttp stats: error: ")

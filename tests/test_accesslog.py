"""The access log (``access_log=True``): one combined-format line per response, over real sockets.

Lines are read from the ``cyclehttp.access`` logger with ``caplog``. The protocol logs a
response before it writes it, so once the client has read a response its line is there.
Every line is checked field by field with one strict pattern whose quoted fields only
admit escaped quotes and backslashes, so a match also proves the quotes are balanced.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

import pytest

from cyclehttp import App, Request, Response
from cyclehttp.clock.accesslog import ACCESS_LOGGER, AccessLog, escape, format_time
from cyclehttp.serving.cli import _log_access_to_stdout
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection, RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_QUOTED = r'"((?:[^"\\\x00-\x1f\x7f-\U0010ffff]|\\["\\]|\\x[0-9a-f]{2})*)"'
LINE = re.compile(
    r"(?P<client>[0-9.]+|-) - - "
    rf"\[(?P<time>[0-9]{{2}}/(?:{'|'.join(MONTHS)})/[0-9]{{4}}"
    r":[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4})\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>[1-5][0-9]{2}) (?P<size>[1-9][0-9]*|-) "
    + _QUOTED.replace("(", "(?P<referer>", 1)
    + " "
    + _QUOTED.replace("(", "(?P<agent>", 1)
    + r" (?P<elapsed>[0-9]+\.[0-9]{6}|-)"
)
TIME_FIELD = re.compile(r"\[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\]")

STATIC_BODY = "static body"


def sync_handler(request: Request) -> str:
    return "sync!"


async def async_handler(request: Request) -> str:
    await asyncio.sleep(0)
    return "async answer"


def echo(request: Request) -> bytes:
    return request.body


def boom(request: Request) -> str:
    raise RuntimeError("this handler always fails")


def empty(request: Request) -> bytes:
    return b""


def query(request: Request) -> str:
    return request.query_string.decode("latin-1")


async def sleep_50ms(request: Request) -> str:
    await asyncio.sleep(0.05)
    return "slept"


# The handler sleeps 50 ms; uvloop's timers count in whole milliseconds from the loop's cached
# time, so the sleep may end up to ~1 ms short of 50 ms by the monotonic clock.
SLEPT = 0.048

ROUTES = [
    ("GET", "/static", Response.text(STATIC_BODY)),
    ("GET", "/sync", sync_handler),
    ("GET", "/async", async_handler),
    ("POST", "/echo", echo),
    ("GET", "/boom", boom),
    ("GET", "/empty", empty),
    ("GET", "/x", query),
    ("GET", "/sleep", sleep_50ms),
]


# -- helpers -------------------------------------------------------------------


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Capture ``cyclehttp.access`` at INFO; the fixture returns a function giving the lines so far."""
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    def lines() -> list[str]:
        records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
        assert all(r.levelno == logging.INFO for r in records)
        return [r.getMessage() for r in records]

    return lines


def request(method: str, target: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "Host: t", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse(line: str) -> dict[str, str]:
    """The fields of one access line; fails the test unless every field is well formed."""
    assert "\n" not in line and len(line.splitlines()) == 1, f"not one line: {line!r}"
    match = LINE.fullmatch(line)
    assert match is not None, f"malformed access line: {line!r}"
    return match.groupdict()


def check(
    line: str,
    request_line: str,
    status: int,
    size: int,
    referer: str = "-",
    agent: str = "-",
) -> dict[str, str]:
    """Assert every field of ``line`` but the time and the elapsed seconds (checked by the pattern)."""
    fields = parse(line)
    assert fields["client"] == "127.0.0.1"
    assert fields["request"] == request_line
    assert fields["status"] == str(status)
    assert fields["size"] == (str(size) if size else "-")
    assert fields["referer"] == referer
    assert fields["agent"] == agent
    assert fields["elapsed"] == "-" or float(fields["elapsed"]) >= 0
    return fields


async def exchange(server: TestServer, data: bytes, *, head: bool = False) -> RawResponse:
    """Send one request on a fresh connection and read its response."""
    async with await server.raw() as connection:
        await connection.send(data)
        return await connection.read_response(head=head, timeout=5)


async def refused(connection: RawConnection, status: int) -> RawResponse:
    response = await connection.read_response(timeout=5)
    assert response.status == status
    assert await connection.is_closed_by_peer(timeout=5)
    return response


# -- one line per response -------------------------------------------------------


async def test_static_route_get_and_head(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("GET", "/static"))
    assert response.body == STATIC_BODY.encode()
    head = await exchange(server, request("HEAD", "/static"), head=True)
    assert head.status == 200
    lines = access()
    assert len(lines) == 2
    check(lines[0], "GET /static HTTP/1.1", 200, len(STATIC_BODY))
    check(lines[1], "HEAD /static HTTP/1.1", 200, 0)


async def test_sync_handler(cyclehttp_server: ServerFactory, access: Callable[[], list[str]]) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("GET", "/sync"))
    assert response.body == b"sync!"
    [line] = access()
    check(line, "GET /sync HTTP/1.1", 200, 5)


async def test_async_handler(cyclehttp_server: ServerFactory, access: Callable[[], list[str]]) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("GET", "/async"))
    assert response.body == b"async answer"
    [line] = access()
    check(line, "GET /async HTTP/1.1", 200, len(b"async answer"))


async def test_head_of_a_handler_route_has_no_size(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    assert (await exchange(server, request("HEAD", "/sync"), head=True)).status == 200
    [line] = access()
    check(line, "HEAD /sync HTTP/1.1", 200, 0)


async def test_empty_body_has_no_size(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("GET", "/empty"))
    assert response.status == 200 and response.body == b""
    [line] = access()
    check(line, "GET /empty HTTP/1.1", 200, 0)


async def test_post_with_a_body(cyclehttp_server: ServerFactory, access: Callable[[], list[str]]) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    body = b"x" * 1234
    response = await exchange(server, request("POST", "/echo", body=body))
    assert response.body == body
    [line] = access()
    check(line, "POST /echo HTTP/1.1", 200, 1234)


async def test_not_found(cyclehttp_server: ServerFactory, access: Callable[[], list[str]]) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("GET", "/nowhere"))
    assert response.status == 404
    [line] = access()
    check(line, "GET /nowhere HTTP/1.1", 404, len(response.body))


async def test_method_not_allowed(cyclehttp_server: ServerFactory, access: Callable[[], list[str]]) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("DELETE", "/static"))
    assert response.status == 405
    [line] = access()
    check(line, "DELETE /static HTTP/1.1", 405, len(response.body))


async def test_static_answer_instead_of_100_continue_is_logged(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    """A static target (here a 404) answers an ``Expect: 100-continue`` request at once,
    without reading its body: that answer gets its line too."""
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        await connection.send(
            b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        response = await refused(connection, 404)
    [line] = access()
    check(line, "POST /nowhere HTTP/1.1", 404, len(response.body))


async def test_handler_that_raises_is_500(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("GET", "/boom"))
    assert response.status == 500
    [line] = access()
    check(line, "GET /boom HTTP/1.1", 500, len(response.body))


async def test_pipelined_burst_is_logged_in_order(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        await connection.send(request("GET", "/async") + request("GET", "/sync") + request("GET", "/static"))
        responses = await connection.read_responses(3, timeout=5)
    assert [r.body for r in responses] == [b"async answer", b"sync!", STATIC_BODY.encode()]
    lines = access()
    assert len(lines) == 3
    check(lines[0], "GET /async HTTP/1.1", 200, len(b"async answer"))
    check(lines[1], "GET /sync HTTP/1.1", 200, 5)
    check(lines[2], "GET /static HTTP/1.1", 200, len(STATIC_BODY))


async def test_keep_alive_requests_are_one_line_each(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        for sent in range(1, 4):
            await connection.send(request("GET", "/sync"))
            assert (await connection.read_response(timeout=5)).status == 200
            assert len(access()) == sent
    for line in access():
        check(line, "GET /sync HTTP/1.1", 200, 5)


async def test_query_string_appears_as_sent(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, request("GET", "/x?a=1&b=2"))
    assert response.body == b"a=1&b=2"
    response = await exchange(server, request("GET", "/x?q=%22a%20b%22&q=+"))
    assert response.status == 200
    lines = access()
    check(lines[0], "GET /x?a=1&b=2 HTTP/1.1", 200, 7)
    check(lines[1], "GET /x?q=%22a%20b%22&q=+ HTTP/1.1", 200, len(response.body))


async def test_referer_and_user_agent_are_shown(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    await exchange(
        server, request("GET", "/sync", "Referer: http://example.com/page?x=1", "User-Agent: curl/8.5.0")
    )
    # Header names are case-insensitive; other headers are not shown.
    await exchange(server, request("GET", "/sync", "user-agent: lower/1.0", "REFERER: /up", "X-Other: no"))
    lines = access()
    check(lines[0], "GET /sync HTTP/1.1", 200, 5, referer="http://example.com/page?x=1", agent="curl/8.5.0")
    check(lines[1], "GET /sync HTTP/1.1", 200, 5, referer="/up", agent="lower/1.0")


async def test_http_1_0(cyclehttp_server: ServerFactory, access: Callable[[], list[str]]) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        await connection.send(b"GET /static HTTP/1.0\r\n\r\n")
        response = await connection.read_response(timeout=5)
        assert response.status == 200
        assert await connection.is_closed_by_peer(timeout=5)
    [line] = access()
    check(line, "GET /static HTTP/1.0", 200, len(STATIC_BODY))


async def test_metrics_page_is_logged(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True, metrics_path="/metrics")
    response = await exchange(server, request("GET", "/metrics"))
    assert response.status == 200
    [line] = access()
    check(line, "GET /metrics HTTP/1.1", 200, len(response.body))


async def test_time_field_is_the_current_time(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    before = int(time.time())
    await exchange(server, request("GET", "/sync"))
    after = time.time()
    logged = datetime.strptime(parse(access()[0])["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
    assert before <= logged <= after


def test_the_line_pattern_is_strict() -> None:
    """The pattern these tests rely on refuses what an unescaped client value would produce."""
    good = (
        '127.0.0.1 - - [24/Nov/2026:20:14:03 +0000] "GET /users/1 HTTP/1.1" 200 10 "-" "curl/8.5.0" 0.000042'
    )
    assert LINE.fullmatch(good)
    for bad in (
        good.replace("curl/8.5.0", 'cu"rl'),
        good.replace("curl/8.5.0", "cu\\rl"),
        good.replace("curl/8.5.0", "cu\trl"),
        good.replace("Nov", "nov"),
        good.replace(" 10 ", " 0 "),
        good.replace("0.000042", "0.42"),
        good + "\n",
    ):
        assert LINE.fullmatch(bad) is None, bad


# -- escaping ----------------------------------------------------------------------------

# What llhttp lets through in a header value besides 0x20-0x7e: tab and obs-text (0x80-0xff).
# It refuses every other control byte (0x00-0x08, 0x0a-0x1f, 0x7f) with a 400.
NASTY_AGENT = b'evil" 200 1 "-" "x\\ \tend \x80\x85\x9f'
NASTY_AGENT_LOGGED = r"evil\" 200 1 \"-\" \"x\\ \x09end \x80\x85\x9f"


async def test_user_agent_is_escaped(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    data = b"GET /sync HTTP/1.1\r\nHost: t\r\nUser-Agent: " + NASTY_AGENT + b'\r\nReferer: a"\\b\r\n\r\n'
    assert (await exchange(server, data)).status == 200
    [line] = access()
    check(line, "GET /sync HTTP/1.1", 200, 5, referer=r"a\"\\b", agent=NASTY_AGENT_LOGGED)


async def test_every_byte_llhttp_accepts_in_a_header_is_logged_safely(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    agent = bytes([ord("<"), 9, *range(0x20, 0x7F), *range(0x80, 0x100), ord(">")])  # no OWS to strip
    data = b"GET /sync HTTP/1.1\r\nHost: t\r\nUser-Agent: " + agent + b"\r\n\r\n"
    assert (await exchange(server, data)).status == 200
    [line] = access()
    ascii_part = "".join({'"': '\\"', "\\": "\\\\"}.get(chr(c), chr(c)) for c in range(0x20, 0x7F))
    high_part = "".join(f"\\x{c:02x}" for c in range(0x80, 0x100))
    expected = "<\\x09" + ascii_part + high_part + ">"
    fields = check(line, "GET /sync HTTP/1.1", 200, 5, agent=expected)
    assert fields["agent"].count('"') == fields["agent"].count('\\"') == 1


async def test_bytes_above_ascii_are_escaped_like_nginx(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    """Bytes 0x80-0xff are written as \\xHH, so the log stays ASCII whatever the client sends."""
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    data = b"GET /sync HTTP/1.1\r\nHost: t\r\nUser-Agent: caf\xe9 \xa0\xff \x9b\r\n\r\n"
    assert (await exchange(server, data)).status == 200
    [line] = access()
    check(line, "GET /sync HTTP/1.1", 200, 5, agent="caf\\xe9 \\xa0\\xff \\x9b")
    assert line.isascii()


async def test_control_byte_in_a_header_is_refused_and_logged_without_it(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        await connection.send(b"GET /sync HTTP/1.1\r\nHost: t\r\nUser-Agent: a\x01b\r\n\r\n")
        response = await refused(connection, 400)
    [line] = access()
    check(line, "-", 400, len(response.body))


async def test_request_line_is_escaped(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    response = await exchange(server, b'GET /a"b\\c?q="x"\\ HTTP/1.1\r\nHost: t\r\n\r\n')
    assert response.status == 404
    [line] = access()
    check(line, r"GET /a\"b\\c?q=\"x\"\\ HTTP/1.1", 404, len(response.body))


# -- malformed input ----------------------------------------------------------------------


async def test_malformed_request_is_logged_without_request_line(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        await connection.send(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: shown?\r\nBad Header\r\n\r\n")
        response = await refused(connection, 400)
    [line] = access()
    check(line, "-", 400, len(response.body))


async def test_over_long_headers_are_431_without_request_line(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True, max_header_size=1024)
    async with await server.raw() as connection:
        await connection.send(b"GET /sync HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n")
        response = await refused(connection, 431)
    [line] = access()
    check(line, "-", 431, len(response.body))


async def test_over_long_target_is_414_without_request_line(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True, max_url_length=256)
    async with await server.raw() as connection:
        await connection.send(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        response = await refused(connection, 414)
    [line] = access()
    check(line, "-", 414, len(response.body))


async def test_missing_host_is_400_without_request_line(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        await connection.send(b"GET /sync HTTP/1.1\r\nUser-Agent: ua\r\n\r\n")
        response = await refused(connection, 400)
    [line] = access()
    check(line, "-", 400, len(response.body))


async def test_good_request_then_garbage_logs_both_in_order(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    async with await server.raw() as connection:
        await connection.send(request("GET", "/async") + b"NOT HTTP AT ALL\r\n\r\n")
        ok = await connection.read_response(timeout=5)
        bad = await refused(connection, 400)
    assert ok.status == 200
    lines = access()
    assert len(lines) == 2
    check(lines[0], "GET /async HTTP/1.1", 200, len(b"async answer"))
    check(lines[1], "-", 400, len(bad.body))


# -- when nothing is logged ----------------------------------------------------------------


async def traffic(server: TestServer) -> None:
    """A bit of everything: handlers, static, errors, pipelining, malformed input."""
    await exchange(server, request("GET", "/static"))
    await exchange(server, request("HEAD", "/static"), head=True)
    await exchange(server, request("GET", "/async", "User-Agent: ua"))
    await exchange(server, request("POST", "/echo", body=b"abc"))
    await exchange(server, request("GET", "/boom"))
    await exchange(server, request("GET", "/nowhere"))
    async with await server.raw() as connection:
        await connection.send(request("GET", "/sync") * 3)
        await connection.read_responses(3, timeout=5)
    async with await server.raw() as connection:
        await connection.send(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        await refused(connection, 400)


async def test_nothing_is_logged_by_default(
    cyclehttp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)
    server = await cyclehttp_server(App(ROUTES))
    assert server.server.state.access_log is None
    await traffic(server)
    assert [r for r in caplog.records if r.name == ACCESS_LOGGER] == []


async def test_nothing_is_logged_when_the_logger_is_above_info(
    cyclehttp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=ACCESS_LOGGER)
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    await traffic(server)
    assert [r for r in caplog.records if r.name == ACCESS_LOGGER] == []


async def test_the_same_traffic_is_logged_when_enabled(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    """The control for the two tests above: the same traffic gives one line per response."""
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    await traffic(server)
    lines = access()
    assert len(lines) == 10
    statuses = [parse(line)["status"] for line in lines]
    assert statuses == ["200", "200", "200", "200", "500", "404", "200", "200", "200", "400"]


# -- the response time --------------------------------------------------------------------


async def test_response_time_covers_an_async_handler_sleep(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True)
    await exchange(server, request("GET", "/sync"))
    assert (await exchange(server, request("GET", "/sleep"))).body == b"slept"
    fast, slow = (parse(line) for line in access())
    assert float(fast["elapsed"]) >= 0
    # From the read that brought the request to the answer: the handler's 50 ms sleep is inside it.
    assert float(slow["elapsed"]) >= SLEPT


async def test_response_time_is_measured_without_timing(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True, timing=False)
    assert (await exchange(server, request("GET", "/sleep"))).body == b"slept"
    [line] = access()
    assert float(parse(line)["elapsed"]) >= SLEPT


# -- answers without a request ----------------------------------------------------------------


async def test_too_many_connections_503_is_logged(
    cyclehttp_server: ServerFactory, access: Callable[[], list[str]]
) -> None:
    server = await cyclehttp_server(App(ROUTES), access_log=True, max_connections=1)
    async with await server.raw() as first:
        await first.send(request("GET", "/sync"))
        assert (await first.read_response(timeout=5)).status == 200  # accepted by now
        async with await server.raw() as second:
            response = await refused(second, 503)
    lines = access()
    assert len(lines) == 2
    check(lines[1], "-", 503, len(response.body))


# -- escape() and format_time() --------------------------------------------------------------


def test_escape_leaves_printable_ascii_alone() -> None:
    text = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
    assert escape(text) == text
    assert escape("") == ""
    assert escape("curl/8.5.0") == "curl/8.5.0"


def test_escape_quote_and_backslash() -> None:
    assert escape('"') == '\\"'
    assert escape("\\") == "\\\\"
    assert escape('a\\"b') == 'a\\\\\\"b'  # the backslash first, so \" cannot unescape a quote


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0x100)])
def test_escape_control_and_non_ascii_characters_as_hex(code: int) -> None:
    assert escape(f"a{chr(code)}b") == f"a\\x{code:02x}b"


def test_escaped_text_is_ascii() -> None:
    text = "".join(chr(c) for c in range(0x100))
    assert escape(text).isascii()


def test_escaped_text_cannot_end_a_quoted_field_or_a_line() -> None:
    forged = 'x" 200 1 "-" "-" 0.000001\n6.6.6.6 - - [01/Jan/2000:00:00:00 +0000] "GET /admin\r\x85\x1e'
    escaped = escape(forged)
    assert len(escaped.splitlines()) == 1
    assert re.fullmatch(r'(?:[^"\\]|\\["\\]|\\x[0-9a-f]{2})*', escaped)
    assert escaped.isascii() and escaped.isprintable()


@pytest.fixture
def set_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the process time zone (TZ + tzset); the original one is restored afterwards."""

    def set_zone(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def apache_time(seconds: float) -> str:
    """What format_time should give, from time.strftime (English month names by index)."""
    t = time.localtime(seconds)
    return f"[{time.strftime('%d', t)}/{MONTHS[t.tm_mon - 1]}/{time.strftime('%Y:%H:%M:%S %z', t)}]"


NOV_24_2026 = calendar.timegm((2026, 11, 24, 20, 14, 3, 0, 0, 0))


def test_format_time_in_utc(set_tz: Callable[[str], None]) -> None:
    set_tz("UTC0")
    assert format_time(NOV_24_2026) == "[24/Nov/2026:20:14:03 +0000]"
    assert format_time(NOV_24_2026 + 0.999) == "[24/Nov/2026:20:14:03 +0000]"
    assert format_time(0) == "[01/Jan/1970:00:00:00 +0000]"


def test_format_time_matches_strftime_in_the_local_zone() -> None:
    for seconds in (NOV_24_2026, 1_000_000_000, 1_720_000_000.5, time.time()):
        assert format_time(seconds) == apache_time(seconds)
        assert TIME_FIELD.fullmatch(format_time(seconds))


def test_format_time_month_names_are_english_for_every_month(set_tz: Callable[[str], None]) -> None:
    set_tz("UTC0")
    for month, name in enumerate(MONTHS, start=1):
        seconds = calendar.timegm((2025, month, 5, 7, 8, 9, 0, 0, 0))
        assert format_time(seconds) == f"[05/{name}/2025:07:08:09 +0000]"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("XYZ+03:30", "[24/Nov/2026:16:44:03 -0330]"),  # POSIX TZ: a positive offset is west of UTC
        ("XYZ+10", "[24/Nov/2026:10:14:03 -1000]"),
        ("XYZ-05:45", "[25/Nov/2026:01:59:03 +0545]"),
        ("XYZ-14", "[25/Nov/2026:10:14:03 +1400]"),
    ],
)
def test_format_time_with_an_offset(set_tz: Callable[[str], None], zone: str, expected: str) -> None:
    set_tz(zone)
    assert format_time(NOV_24_2026) == expected
    assert format_time(NOV_24_2026) == apache_time(NOV_24_2026)


def test_format_time_across_daylight_saving(set_tz: Callable[[str], None]) -> None:
    set_tz("EST5EDT,M3.2.0,M11.1.0")
    assert format_time(calendar.timegm((2026, 1, 15, 12, 0, 0, 0, 0, 0))) == "[15/Jan/2026:07:00:00 -0500]"
    assert format_time(calendar.timegm((2026, 7, 15, 12, 0, 0, 0, 0, 0))) == "[15/Jul/2026:08:00:00 -0400]"


def test_format_time_negative_offset_with_seconds(set_tz: Callable[[str], None]) -> None:
    set_tz("LMT+04:56:02")
    assert time.localtime(NOV_24_2026).tm_gmtoff == -17762
    assert format_time(NOV_24_2026) == apache_time(NOV_24_2026)


# -- AccessLog.line / log directly -----------------------------------------------------------


def make_request(headers: list[tuple[bytes, bytes]], query: bytes = b"", version: str = "1.1") -> Request:
    return Request(b"GET", b"/p", query, headers, b"", None, version, None)


def test_line_without_a_request_has_dashes() -> None:
    line = AccessLog().line("10.0.0.1", None, 400, 12, 0.25)
    fields = parse(line)
    assert fields["client"] == "10.0.0.1"
    assert (fields["request"], fields["status"], fields["size"]) == ("-", "400", "12")
    assert (fields["referer"], fields["agent"], fields["elapsed"]) == ("-", "-", "0.250000")


def test_line_shows_the_last_user_agent_and_referer() -> None:
    headers = [(b"User-Agent", b"first"), (b"Referer", b"r1"), (b"user-agent", b"second")]
    request = make_request(headers, b"a=1")
    fields = parse(AccessLog().line("-", request, 200, 0, 1.5))
    assert fields["request"] == "GET /p?a=1 HTTP/1.1"
    assert (fields["size"], fields["referer"], fields["agent"]) == ("-", "r1", "second")
    assert fields["elapsed"] == "1.500000"


def test_log_uses_the_given_logger_and_skips_work_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.accesslog.custom")
    caplog.set_level(logging.INFO, logger=logger.name)
    log = AccessLog(logger)
    log.log("127.0.0.1", make_request([]), 204, 0, 0)
    [record] = [r for r in caplog.records if r.name == logger.name]
    assert record.levelno == logging.INFO
    fields = parse(record.getMessage())
    assert (fields["request"], fields["status"], fields["elapsed"]) == ("GET /p HTTP/1.1", "204", "-")
    caplog.set_level(logging.WARNING, logger=logger.name)
    log.log("127.0.0.1", make_request([]), 200, 1, time.monotonic_ns())
    assert len([r for r in caplog.records if r.name == logger.name]) == 1


# -- the CLI's stdout handler ---------------------------------------------------------------


@pytest.fixture
def restore_access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ACCESS_LOGGER)
    handlers = list(logger.handlers)
    yield logger
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_cli_sends_access_lines_bare_to_stdout(
    restore_access_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = restore_access_logger
    before = list(logger.handlers)
    _log_access_to_stdout()
    [handler] = [h for h in logger.handlers if h not in before]
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stdout
    assert handler.formatter is not None and handler.formatter._fmt == "%(message)s"
    assert logger.level == logging.INFO
    assert logger.propagate is False
    line = '127.0.0.1 - - [24/Nov/2026:20:14:03 +0000] "GET / HTTP/1.1" 200 5 "-" "-" 0.000001'
    logger.info("%s", line)
    logger.debug("not shown")
    assert capsys.readouterr().out == line + "\n"

"""Byte ranges on ``app.static()`` files: pre-rendered or read from disk, the same answers.

RFC 9110 section 14: one range gives 206 with ``Content-Range``, a range past
the end 416 with ``Content-Range: bytes */size``, several ranges or a malformed
one the whole file (200); ``If-Range`` that no longer matches gives the whole
file; HEAD ignores ``Range``. nginx answers this way for every static file.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path

import pytest

from cyclehttp import App, Response
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]

SMALL = bytes(range(256)) * 4  # 1 KiB: pre-rendered
LARGE = os.urandom(200 * 1024)  # over prerender_max: served from disk
TEXT = ("cyclehttp " * 400).encode()  # compressible: has a gzip variant
MTIME = 1_700_000_000


@pytest.fixture
def site(tmp_path: Path) -> Path:
    for name, data in (("small.bin", SMALL), ("large.bin", LARGE), ("page.txt", TEXT)):
        path = tmp_path / name
        path.write_bytes(data)
        os.utime(path, (MTIME, MTIME))
    return tmp_path


async def serve(cyclehttp_server: ServerFactory, site: Path) -> TestServer:
    app = App()
    plan = app.static("/s", site)
    assert plan.prerendered_files == 2 and plan.disk_files == 1
    return await cyclehttp_server(app)


async def ask(server: TestServer, path: str, *headers: str, method: str = "GET") -> RawResponse:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *headers]
    async with await server.raw() as conn:
        await conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return await conn.read_response(head=method == "HEAD")


BOTH = pytest.mark.parametrize(
    ("name", "data"), [("small.bin", SMALL), ("large.bin", LARGE)], ids=["prerendered", "disk"]
)


@BOTH
@pytest.mark.parametrize(
    ("field", "first", "last"),
    [("bytes=10-19", 10, 19), ("bytes=-5", -5, -1), ("bytes=1000-", 1000, -1), ("bytes=0-0", 0, 0)],
)
async def test_one_range_is_206(
    cyclehttp_server: ServerFactory, site: Path, name: str, data: bytes, field: str, first: int, last: int
) -> None:
    server = await serve(cyclehttp_server, site)
    response = await ask(server, f"/s/{name}", f"Range: {field}")
    start = first % len(data)
    end = last % len(data)
    assert response.status == 206
    assert response.body == data[start : end + 1]
    assert response.header("content-range") == f"bytes {start}-{end}/{len(data)}"
    assert response.header("content-length") == str(end - start + 1)
    assert response.header("accept-ranges") == "bytes"
    assert response.header("etag") is not None and response.header("last-modified") is not None


@BOTH
async def test_without_range_the_whole_file_says_it_takes_ranges(
    cyclehttp_server: ServerFactory, site: Path, name: str, data: bytes
) -> None:
    server = await serve(cyclehttp_server, site)
    response = await ask(server, f"/s/{name}")
    assert response.status == 200
    assert response.body == data
    assert response.header("accept-ranges") == "bytes"
    assert response.header("content-range") is None


@BOTH
async def test_a_range_past_the_end_is_416(
    cyclehttp_server: ServerFactory, site: Path, name: str, data: bytes
) -> None:
    server = await serve(cyclehttp_server, site)
    response = await ask(server, f"/s/{name}", f"Range: bytes={len(data)}-")
    assert response.status == 416
    assert response.header("content-range") == f"bytes */{len(data)}"


@BOTH
@pytest.mark.parametrize("field", ["bytes=0-1,5-6", "bytes=5-1", "items=0-1", "bytes=x-y", "bytes=-"])
async def test_several_or_malformed_ranges_give_the_whole_file(
    cyclehttp_server: ServerFactory, site: Path, name: str, data: bytes, field: str
) -> None:
    server = await serve(cyclehttp_server, site)
    response = await ask(server, f"/s/{name}", f"Range: {field}")
    assert response.status == 200
    assert response.body == data


@BOTH
async def test_head_ignores_range(
    cyclehttp_server: ServerFactory, site: Path, name: str, data: bytes
) -> None:
    server = await serve(cyclehttp_server, site)
    response = await ask(server, f"/s/{name}", "Range: bytes=0-9", method="HEAD")
    assert response.status == 200
    assert response.header("content-length") == str(len(data))


@BOTH
async def test_if_range(cyclehttp_server: ServerFactory, site: Path, name: str, data: bytes) -> None:
    server = await serve(cyclehttp_server, site)
    whole = await ask(server, f"/s/{name}")
    etag = whole.header("etag")
    modified = whole.header("last-modified")
    assert etag is not None and modified == formatdate(MTIME, usegmt=True)
    matching = [etag, modified]
    stale = ['"stale"', "W/" + etag, formatdate(MTIME - 60, usegmt=True), "not a date"]
    for value in matching:
        response = await ask(server, f"/s/{name}", "Range: bytes=2-3", f"If-Range: {value}")
        assert (response.status, response.body) == (206, data[2:4]), value
    for value in stale:
        response = await ask(server, f"/s/{name}", "Range: bytes=2-3", f"If-Range: {value}")
        assert (response.status, response.body) == (200, data), value


async def test_if_none_match_wins_over_range(cyclehttp_server: ServerFactory, site: Path) -> None:
    server = await serve(cyclehttp_server, site)
    etag = (await ask(server, "/s/small.bin")).header("etag")
    response = await ask(server, "/s/small.bin", f"If-None-Match: {etag}", "Range: bytes=0-9")
    assert response.status == 304


async def test_a_range_of_the_gzip_variant_is_of_its_bytes(
    cyclehttp_server: ServerFactory, site: Path
) -> None:
    server = await serve(cyclehttp_server, site)
    whole = await ask(server, "/s/page.txt", "Accept-Encoding: gzip")
    assert whole.header("content-encoding") == "gzip"
    assert gzip.decompress(whole.body) == TEXT
    part = await ask(server, "/s/page.txt", "Accept-Encoding: gzip", "Range: bytes=0-9")
    assert part.status == 206
    assert part.header("content-encoding") == "gzip"
    assert part.body == whole.body[:10]
    assert part.header("content-range") == f"bytes 0-9/{len(whole.body)}"
    assert part.header("etag") == whole.header("etag")


async def test_pipelined_range_requests_are_answered_in_order_and_counted(
    cyclehttp_server: ServerFactory, site: Path
) -> None:
    server = await serve(cyclehttp_server, site)
    requests = [
        "GET /s/small.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\n\r\n",
        "GET /s/small.bin HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /s/small.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=9999-\r\n\r\n",
        "GET /s/small.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=4-7\r\n\r\n",
    ]
    async with await server.raw() as conn:
        await conn.send("".join(requests).encode())
        answers = await conn.read_responses(4)
    assert [a.status for a in answers] == [206, 200, 416, 206]
    assert [answers[0].body, answers[3].body] == [SMALL[0:4], SMALL[4:8]]
    route = [r for r in server.stats.requests_by_route if r.route == "/s/small.bin"]
    assert {r.status: r.count for r in route} == {"2xx": 3, "4xx": 1}


async def test_a_route_response_takes_ranges_only_when_it_says_so(cyclehttp_server: ServerFactory) -> None:
    app = App(
        [
            ("GET", "/plain", Response(b"0123456789")),
            ("GET", "/ranged", Response(b"0123456789", headers=[("Accept-Ranges", "bytes")])),
        ]
    )
    server = await cyclehttp_server(app)
    plain = await ask(server, "/plain", "Range: bytes=2-4")
    ranged = await ask(server, "/ranged", "Range: bytes=2-4")
    assert (plain.status, plain.body) == (200, b"0123456789")
    assert (ranged.status, ranged.body) == (206, b"234")

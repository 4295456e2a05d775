"""File responses (``Response.file``) over real sockets, and their header logic.

What is checked: a multi-MiB file byte for byte (sent by ``loop.sendfile`` on
asyncio, by paced reads on uvloop) and a small one (inline); the headers (type,
Last-Modified, ETag, Accept-Ranges, Content-Disposition); HEAD; 304 by ETag and
by date (RFC 9110 section 13); single ranges, unsatisfiable (416), several
ranges, malformed and absurd Range headers, If-Range (section 14); a client that
leaves mid-file leaves no open descriptor; a missing file is the handler's to
answer.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import pytest

from cyclehttp import App, HTTPError, Request, Response
from cyclehttp.cycle.files import UNSATISFIABLE, FileResponse, guess_content_type, parse_range
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawResponse
from tests.serverside import small_window_connection

SIZE = 3 * 1024 * 1024 + 12345


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    content = os.urandom(SIZE)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    return path, content


@pytest.fixture
def files_app(tmp_path: Path, data_file: tuple[Path, bytes]) -> App:
    path, _ = data_file
    (tmp_path / "notes.txt").write_text("héllo\n", encoding="utf-8")

    def whole(request: Request) -> FileResponse:
        return Response.file(path)

    async def download(request: Request) -> FileResponse:
        return Response.file(path, filename="réport 2024.bin", headers={"Cache-Control": "no-cache"})

    def notes(request: Request) -> FileResponse:
        return Response.file(tmp_path / "notes.txt")

    def missing(request: Request) -> FileResponse:
        try:
            return Response.file(tmp_path / "nope.txt")
        except FileNotFoundError:
            raise HTTPError(404, "no such file") from None

    def missing_uncaught(request: Request) -> FileResponse:
        return Response.file(tmp_path / "nope.txt")

    return App(
        [
            ("GET", "/f", whole),
            ("GET", "/dl", download),
            ("GET", "/notes", notes),
            ("GET", "/missing", missing),
            ("GET", "/missing500", missing_uncaught),
            ("GET", "/", "root"),
        ]
    )


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = "".join(f"{h}\r\n" for h in headers)
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\n{lines}\r\n".encode()


async def fetch(server: TestServer, path: str, *headers: str, method: str = "GET") -> RawResponse:
    async with await server.raw(timeout=20) as conn:
        await conn.send(get(path, *headers, method=method))
        return await conn.read_response(head=method == "HEAD")


# -- whole files -------------------------------------------------------------------------------


async def test_a_large_file_is_sent_whole_byte_exact_with_its_headers(
    cyclehttp_server, files_app: App, data_file: tuple[Path, bytes]
) -> None:
    path, content = data_file
    server = await cyclehttp_server(files_app)
    async with await server.raw(timeout=20) as conn:
        await conn.send(get("/f") + get("/notes"))  # pipelined behind a large body
        response, after = await conn.read_responses(2)
        assert not await conn.is_closed_by_peer(timeout=0.1)
    assert response.status == 200
    assert response.body == content
    info = path.stat()
    assert response.header("Content-Length") == str(SIZE)
    assert response.header("Content-Type") == "application/octet-stream"
    assert response.header("Last-Modified") == formatdate(info.st_mtime, usegmt=True)
    assert response.header("ETag") == f'"{info.st_mtime_ns:x}-{info.st_size:x}-{info.st_ino:x}"'
    assert response.header("Accept-Ranges") == "bytes"
    assert response.header("Content-Disposition") is None
    assert after.body == "héllo\n".encode()
    assert after.header("Content-Type") == "text/plain; charset=utf-8"
    assert server.stats.requests_by_status["2xx"] == 2
    assert server.stats.bytes_sent > SIZE


async def test_download_headers_and_head(cyclehttp_server, files_app: App) -> None:
    server = await cyclehttp_server(files_app)
    async with await server.raw() as conn:
        await conn.send(get("/dl", method="HEAD") + get("/notes"))
        head = await conn.read_response(head=True)
        after = await conn.read_response()  # nothing of the file after the HEAD answer
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(SIZE)
    assert head.header("Content-Disposition") == (
        "attachment; filename=\"r_port 2024.bin\"; filename*=UTF-8''r%C3%A9port%202024.bin"
    )
    assert head.header("Cache-Control") == "no-cache"
    assert after.body == "héllo\n".encode()


async def test_a_missing_file_is_the_handlers_to_answer(
    cyclehttp_server, files_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    server = await cyclehttp_server(files_app)
    caught = await fetch(server, "/missing")
    assert caught.status == 404 and caught.body == b"no such file"
    uncaught = await fetch(server, "/missing500")
    assert uncaught.status == 500
    assert any(isinstance(r.exc_info and r.exc_info[1], FileNotFoundError) for r in caplog.records)


def test_file_response_refuses_directories_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        Response.file(tmp_path)
    with pytest.raises(FileNotFoundError):
        Response.file(tmp_path / "absent")
    with pytest.raises(ValueError, match="set by the server"):
        (tmp_path / "a").write_bytes(b"a")
        Response.file(tmp_path / "a", headers={"Content-Length": "1"})


# -- conditional requests --------------------------------------------------------------------


async def test_if_none_match_gives_304(
    cyclehttp_server, files_app: App, data_file: tuple[Path, bytes]
) -> None:
    server = await cyclehttp_server(files_app)
    etag = (await fetch(server, "/dl", method="HEAD")).header("ETag")
    assert etag is not None
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await fetch(server, "/dl", f"If-None-Match: {value}")
        assert response.status == 304, value
        assert response.body == b""
        assert response.header("ETag") == etag
        assert response.header("Cache-Control") == "no-cache"
        assert response.header("Content-Type") is None and response.header("Content-Length") is None
    other = await fetch(server, "/notes", f"If-None-Match: {etag}")
    assert other.status == 200
    # Two fields are one list (RFC 9110 section 5.3).
    split = await fetch(server, "/dl", 'If-None-Match: "a"', f"If-None-Match: {etag}", method="HEAD")
    assert split.status == 304


async def test_if_modified_since_gives_304_unless_if_none_match_is_present(
    cyclehttp_server, files_app: App, data_file: tuple[Path, bytes]
) -> None:
    path, _ = data_file
    server = await cyclehttp_server(files_app)
    mtime = path.stat().st_mtime
    same = formatdate(mtime, usegmt=True)
    assert (await fetch(server, "/f", f"If-Modified-Since: {same}", method="HEAD")).status == 304
    later = formatdate(mtime + 60, usegmt=True)
    if mtime + 60 < time.time():
        assert (await fetch(server, "/f", f"If-Modified-Since: {later}", method="HEAD")).status == 304
    earlier = formatdate(mtime - 60, usegmt=True)
    assert (await fetch(server, "/f", f"If-Modified-Since: {earlier}", method="HEAD")).status == 200
    # RFC 9110 section 13.1.3: with If-None-Match present, If-Modified-Since is ignored.
    both = await fetch(server, "/f", 'If-None-Match: "nope"', f"If-Modified-Since: {same}", method="HEAD")
    assert both.status == 200
    for bad in (
        "yesterday",
        "",
        "Sun, 99 Foo 2024 99:99:99 GMT",
        formatdate(time.time() + 3600, usegmt=True),
    ):
        assert (await fetch(server, "/f", f"If-Modified-Since: {bad}", method="HEAD")).status == 200, bad


# -- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        (f"bytes={SIZE - 100}-", SIZE - 100, SIZE - 1),
        ("bytes=100-", 100, SIZE - 1),  # large: sent by sendfile or paced reads, not inline
        (f"bytes=10-{SIZE * 2}", 10, SIZE - 1),
        ("BYTES=5-5", 5, 5),
        ("bytes=0-1,", 0, 1),
        ("bytes=0-" + "9" * 5000, 0, SIZE - 1),
        ("bytes=-" + "9" * 5000, 0, SIZE - 1),
    ],
)
async def test_a_single_range_gives_206(
    cyclehttp_server, files_app: App, data_file: tuple[Path, bytes], spec: str, first: int, last: int
) -> None:
    _, content = data_file
    server = await cyclehttp_server(files_app)
    response = await fetch(server, "/f", f"Range: {spec}")
    assert response.status == 206
    assert response.header("Content-Range") == f"bytes {first}-{last}/{SIZE}"
    assert response.header("Content-Length") == str(last - first + 1)
    assert response.body == content[first : last + 1]


@pytest.mark.parametrize("spec", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"])
async def test_an_unsatisfiable_range_gives_416(cyclehttp_server, files_app: App, spec: str) -> None:
    server = await cyclehttp_server(files_app)
    async with await server.raw() as conn:
        await conn.send(get("/f", f"Range: {spec}") + get("/"))
        response, after = await conn.read_responses(2)
    assert response.status == 416
    assert response.header("Content-Range") == f"bytes */{SIZE}"
    assert after.body == b"root"


@pytest.mark.parametrize(
    "spec",
    [
        "bytes=0-1,5-9",  # several ranges: the whole file (allowed; no multipart/byteranges)
        "bytes=abc",
        "bytes=5-1",
        "bytes=-",
        "items=0-1",
        "bytes 0-1",
        "bytes=0-1;x",
        "=",
        "",
    ],
)
async def test_several_or_malformed_ranges_give_the_whole_file(
    cyclehttp_server, files_app: App, data_file: tuple[Path, bytes], spec: str
) -> None:
    server = await cyclehttp_server(files_app)
    response = await fetch(server, "/f", f"Range: {spec}")
    assert response.status == 200
    assert response.header("Content-Range") is None
    assert response.body == data_file[1]


async def test_absurd_range_headers_are_answered_quickly(cyclehttp_server, files_app: App) -> None:
    server = await cyclehttp_server(files_app, max_header_size=2 * 1024 * 1024)
    for value in (
        "bytes=" + "0-1," * 10_000,
        "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000)),
        "bytes=" + "," * 1_000_000 + "0-1",
        "bytes=" + "1" * 1_000_000 + "-",
    ):
        began = time.monotonic()
        response = await fetch(server, "/f", f"Range: {value}", method="HEAD")
        assert response.status == 200
        assert time.monotonic() - began < 1.0
    assert (await fetch(server, "/f", "Range: bytes=" + "," * 500_000 + "0-1")).status == 206


async def test_range_on_head_is_ignored(cyclehttp_server, files_app: App) -> None:
    server = await cyclehttp_server(files_app)
    response = await fetch(server, "/f", "Range: bytes=0-1", method="HEAD")
    assert response.status == 200 and response.header("Content-Length") == str(SIZE)


async def test_if_range(cyclehttp_server, files_app: App, data_file: tuple[Path, bytes]) -> None:
    path, content = data_file
    server = await cyclehttp_server(files_app)
    etag = (await fetch(server, "/f", method="HEAD")).header("ETag")
    modified = formatdate(path.stat().st_mtime, usegmt=True)
    for if_range, status in (
        (etag, 206),
        (modified, 206),
        ('"stale"', 200),
        (f"W/{etag}", 200),
        (formatdate(path.stat().st_mtime - 10, usegmt=True), 200),
        ("garbage", 200),
    ):
        response = await fetch(server, "/f", "Range: bytes=0-9", f"If-Range: {if_range}")
        assert response.status == status, if_range
        assert response.body == (content[:10] if status == 206 else content)


# -- resources -----------------------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def poll(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def files_open(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_a_client_leaving_mid_file_leaves_it_closed(
    cyclehttp_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"z" * (16 * 1024 * 1024))
    server = await cyclehttp_server(
        App([("GET", "/big", lambda r: Response.file(path)), ("GET", "/", "root")])
    )
    before = open_fds()
    for _ in range(3):
        conn, reader = await small_window_connection(server)
        await conn.send(get("/big"))
        await reader.readexactly(256 * 1024)
        assert await poll(lambda: bool(files_open(path))), "the file should be open while it is sent"
        await conn.close()
        assert await poll(lambda: not files_open(path)), "the file is still open after the client left"
    assert await poll(lambda: not server.server.state.connections)
    assert await poll(lambda: open_fds() <= before), open_fds() - before
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert (await fetch(server, "/")).body == b"root"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_shutdown_mid_file_closes_it(cyclehttp_server, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"z" * (16 * 1024 * 1024))
    server = await cyclehttp_server(
        App([("GET", "/big", lambda r: Response.file(path))]), graceful_timeout=0.2
    )
    conn, reader = await small_window_connection(server)
    async with conn:
        await conn.send(get("/big"))
        await reader.readexactly(64 * 1024)
        assert await poll(lambda: bool(files_open(path)))
        began = time.monotonic()
        await asyncio.wait_for(server.server.shutdown(), 3)
        assert time.monotonic() - began < 1.2
        assert await poll(lambda: not files_open(path))


# -- the header logic, directly ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=9-", 10, (9, 9)),
        ("bytes=10-", 10, UNSATISFIABLE),
        ("bytes=-10", 10, (0, 9)),
        ("bytes=-11", 10, (0, 9)),
        ("bytes=-1", 0, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        ("bytes=0001-0002", 10, (1, 2)),
        ("bytes=1-2,3-4", 10, None),
        ("bytes=1-2, ,", 10, (1, 2)),
        ("bytes = 1-2", 10, None),
        ("bytes=1 -2", 10, None),
        ("bytes=\u0661-2", 10, None),  # a non-ASCII digit
    ],
)
def test_parse_range(value: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(value, size) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.html", "text/html; charset=utf-8"),
        ("a.json", "application/json"),
        ("a.png", "image/png"),
        ("a.tar.gz", "application/gzip"),
        ("a.txt.gz", "application/gzip"),
        ("a.unknown-extension", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ],
)
def test_guess_content_type(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected

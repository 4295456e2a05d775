"""``app.static(prefix, directory)``: files served from a directory, over real sockets.

Small files are pre-rendered static routes (checked in the compiled route table, so no
handler runs for them); the rest goes through the ``prefix/{path:path}`` handler and
``Response.file``. Every way out of the directory is a 404: the requests are sent as raw
bytes, because ordinary clients normalise ``..`` away before sending.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path

import pytest

from cyclehttp import App, Response
from cyclehttp.app.static import FileHandler
from cyclehttp.cycle.files import guess_content_type
from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.router import NOT_FOUND_INDEX
from cyclehttp.cycle.targets import HandlerTarget
from cyclehttp.errors import RouteError
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]

needs_response_file = pytest.mark.skipif(
    not hasattr(Response, "file"), reason="Response.file (streaming files) has not landed yet"
)

BINARY = bytes(range(256)) * 4
LARGE = os.urandom(200_000)


@pytest.fixture
def public(tmp_path: Path) -> Path:
    """A directory to serve, next to a secret that must never be reachable."""
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    root = tmp_path / "public"
    (root / "css").mkdir(parents=True)
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / ".git").mkdir()
    (root / "a.txt").write_bytes(b"hello, a\n")
    (root / "index.html").write_bytes(b"<h1>home</h1>")
    (root / "css" / "site.css").write_bytes(b"body { color: red }")
    (root / "docs" / "index.html").write_bytes(b"<h1>docs</h1>")
    (root / "docs" / "deep" / "page.html").write_bytes(b"<p>deep</p>")
    (root / "image.png").write_bytes(BINARY)
    (root / "data.json").write_bytes(b'{"a":1}')
    (root / "blob.unknownext").write_bytes(b"\x00\x01")
    (root / "my file.txt").write_bytes(b"spaced")
    (root / "café ü.txt").write_bytes(b"unicode")
    (root / "100%.txt").write_bytes(b"percent")
    (root / "large.bin").write_bytes(LARGE)
    (root / ".env").write_bytes(b"SECRET=1")
    (root / ".git" / "config").write_bytes(b"[core]")
    (root / "link-inside.txt").symlink_to(root / "a.txt")
    (root / "link-outside.txt").symlink_to(tmp_path / "secret.txt")
    (root / "dir-outside").symlink_to(tmp_path, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    return root


def get(target: bytes | str, method: str = "GET") -> bytes:
    if isinstance(target, str):
        target = target.encode("ascii")
    return method.encode("ascii") + b" " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n"


async def fetch(server: TestServer, target: bytes | str, method: str = "GET") -> RawResponse:
    async with await server.raw() as connection:
        await connection.send(get(target, method))
        return await connection.read_response(head=method == "HEAD", timeout=5)


def last_modified(path: Path) -> str:
    return formatdate(path.stat().st_mtime, usegmt=True)


# --- pre-rendered files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "name", "content_type"),
    [
        ("/static/a.txt", "a.txt", "text/plain; charset=utf-8"),
        ("/static/css/site.css", "css/site.css", "text/css; charset=utf-8"),
        ("/static/docs/deep/page.html", "docs/deep/page.html", "text/html; charset=utf-8"),
        ("/static/image.png", "image.png", "image/png"),
        ("/static/data.json", "data.json", "application/json"),  # RFC 8259: no charset
        ("/static/blob.unknownext", "blob.unknownext", "application/octet-stream"),
        ("/static/my%20file.txt", "my file.txt", "text/plain; charset=utf-8"),
        ("/static/caf%C3%A9%20%C3%BC.txt", "café ü.txt", "text/plain; charset=utf-8"),
        ("/static/caf%c3%a9%20%c3%bc.txt", "café ü.txt", "text/plain; charset=utf-8"),
        ("/static/100%25.txt", "100%.txt", "text/plain; charset=utf-8"),
        ("/static/link-inside.txt", "a.txt", "text/plain; charset=utf-8"),
    ],
)
async def test_small_file_is_served_byte_exact(
    cyclehttp_server: ServerFactory, public: Path, target: str, name: str, content_type: str
) -> None:
    app = App()
    app.static("/static", public)
    server = await cyclehttp_server(app)
    response = await fetch(server, target)
    assert response.status == 200, response.raw
    assert response.body == (public / name).read_bytes()
    assert response.header("content-type") == content_type
    assert response.header("content-length") == str(len(response.body))
    assert response.header("last-modified") == last_modified(public / name)


async def test_head_is_the_get_without_its_body(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public)
    server = await cyclehttp_server(app)
    full = await fetch(server, "/static/image.png")
    head = await fetch(server, "/static/image.png", "HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.header("content-length") == str(len(BINARY)) == full.header("content-length")
    assert head.header("content-type") == "image/png"
    assert head.header("last-modified") == full.header("last-modified")


async def test_query_string_is_ignored(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public)
    server = await cyclehttp_server(app)
    assert (await fetch(server, "/static/css/site.css?v=3")).body == b"body { color: red }"


async def test_other_methods_are_405_with_allow(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public)
    server = await cyclehttp_server(app)
    response = await fetch(server, "/static/a.txt", "DELETE")
    assert response.status == 405
    assert response.header("allow") == "GET, HEAD"


async def test_missing_file_is_404(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public)
    server = await cyclehttp_server(app)
    for target in ("/static/nope.txt", "/static/css/nope.css", "/static/a.txt/x", "/static/a.txt/"):
        assert (await fetch(server, target)).status == 404, target


def test_small_files_are_in_the_static_table_and_no_handler_runs(public: Path) -> None:
    app = App()
    plan = app.static("/static", public)
    router = app.compile()
    for raw in (
        b"/static/a.txt",
        b"/static/css/site.css",
        b"/static/docs/deep/page.html",
        b"/static/my%20file.txt",
        b"/static/caf%C3%A9%20%C3%BC.txt",
        b"/static/100%25.txt",
    ):
        entry = router.exact[raw]
        target = router.targets[entry.methods[b"GET"]]
        assert isinstance(target, PrerenderedResponse), raw
        assert entry.methods[b"HEAD"] == entry.methods[b"GET"]
    # the large file and the refused ones are not pre-rendered
    assert b"/static/large.bin" not in router.exact
    assert not any(b"/." in raw or b"outside" in raw for raw in router.exact)
    index, params = router.lookup(b"GET", b"/static/large.bin")
    handler = router.targets[index]
    assert isinstance(handler, HandlerTarget) and isinstance(handler.handler, FileHandler)
    assert params == {"path": "large.bin"}
    assert plan.disk_files == 1  # large.bin
    files = [r for p, r in plan.routes if isinstance(r, Response) and r.status == 200 and not p.endswith("/")]
    assert plan.prerendered_files == len(files)
    assert plan.prerendered_bytes == sum(len(r.body) for r in files)


def test_prerender_total_caps_the_memory(public: Path) -> None:
    app = App()
    plan = app.static("/static", public, prerender_total=20)
    assert plan.prerendered_bytes <= 20
    router = app.compile()
    assert b"/static/a.txt" in router.exact  # 9 bytes, first in order
    assert b"/static/css/site.css" not in router.exact  # 19 more would pass the cap
    index, _ = router.lookup(b"GET", b"/static/css/site.css")
    assert isinstance(router.targets[index], HandlerTarget)


def test_prerender_max_zero_serves_everything_from_disk(public: Path) -> None:
    app = App()
    plan = app.static("/static", public, prerender_max=0)
    assert plan.prerendered_files == 0
    assert [path for path, _ in plan.routes] == ["/static/{path:path}"]


async def test_small_files_are_a_snapshot_of_start_up(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public)
    (public / "a.txt").write_bytes(b"changed later")
    server = await cyclehttp_server(app)
    assert (await fetch(server, "/static/a.txt")).body == b"hello, a\n"


def test_walk_stops_at_a_symlink_loop(public: Path) -> None:
    app = App()
    app.static("/static", public)  # public/loop -> public: walked once, not forever
    assert b"/static/loop/a.txt" not in app.compile().exact


# --- traversal: every way out is a 404 --------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/static/../secret.txt",
        b"/static/css/../../secret.txt",
        b"/static/%2e%2e/secret.txt",
        b"/static/%2E%2E/secret.txt",
        b"/static/.%2e/secret.txt",
        b"/static/..%2Fsecret.txt",
        b"/static/..%2fsecret.txt",
        b"/static/css%2Fsite.css",
        b"/static/..%5Csecret.txt",
        b"/static/..\\secret.txt",
        b"/static/css\\site.css",
        b"/static/a.txt%00",
        b"/static/a.txt%00.png",
        b"/static//etc/passwd",
        b"/static/%2Fetc/passwd",
        b"/static/./a.txt",
        b"/static/css/./site.css",
        b"/static/css//site.css",
        b"/static/.env",
        b"/static/%2Eenv",
        b"/static/.git/config",
        b"/static/link-outside.txt",
        b"/static/dir-outside/secret.txt",
    ],
)
async def test_traversal_is_404(cyclehttp_server: ServerFactory, public: Path, target: bytes) -> None:
    app = App()
    app.static("/static", public, index=True)
    server = await cyclehttp_server(app)
    response = await fetch(server, target)
    assert response.status == 404, response.raw
    assert b"outside the root" not in response.body
    assert b"SECRET" not in response.body


def test_escaped_slash_does_not_reach_a_static_route() -> None:
    """``/a%2Fb`` is one segment: it is not the static route ``/a/b`` (as for dynamic routes)."""
    router = App([("GET", "/a/b", "ab")]).compile()
    assert router.lookup(b"GET", b"/a/b")[0] != NOT_FOUND_INDEX
    assert router.lookup(b"GET", b"/a/%62")[0] != NOT_FOUND_INDEX
    assert router.lookup(b"GET", b"/a%2Fb") == (NOT_FOUND_INDEX, None)
    assert router.lookup(b"GET", b"/a%2fb") == (NOT_FOUND_INDEX, None)


@needs_response_file
async def test_follow_symlinks_serves_links_leaving_the_root(
    cyclehttp_server: ServerFactory, public: Path
) -> None:
    app = App()
    app.static("/static", public, follow_symlinks=True)
    server = await cyclehttp_server(app)
    response = await fetch(server, "/static/link-outside.txt")
    assert response.status == 200, response.raw
    assert response.body == b"outside the root"
    assert (await fetch(server, "/static/dir-outside/secret.txt")).body == b"outside the root"
    # the URL itself still may not climb out
    assert (await fetch(server, b"/static/../secret.txt")).status == 404


@needs_response_file
async def test_dotfiles_true_serves_dotfiles(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public, dotfiles=True)
    server = await cyclehttp_server(app)
    assert (await fetch(server, "/static/.env")).body == b"SECRET=1"
    assert (await fetch(server, "/static/.git/config")).body == b"[core]"
    assert (await fetch(server, "/static/%2e%2e/secret.txt")).status == 404


# --- directories and index.html ------------------------------------------------------


async def test_index_html_serves_directories(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public, index=True)
    server = await cyclehttp_server(app)
    root = await fetch(server, "/static/")
    assert (root.status, root.body) == (200, b"<h1>home</h1>")
    assert root.header("content-type") == "text/html; charset=utf-8"
    docs = await fetch(server, "/static/docs/")
    assert (docs.status, docs.body) == (200, b"<h1>docs</h1>")
    assert (await fetch(server, "/static/docs/index.html")).body == b"<h1>docs</h1>"
    head = await fetch(server, "/static/docs/", "HEAD")
    assert (head.status, head.header("content-length")) == (200, "13")


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/static", "/static/"),
        ("/static/docs", "/static/docs/"),
        ("/static/empty", "/static/empty/"),
        ("/static/docs/deep", "/static/docs/deep/"),
    ],
)
async def test_directory_without_slash_redirects(
    cyclehttp_server: ServerFactory, public: Path, target: str, location: str
) -> None:
    app = App()
    app.static("/static", public, index=True)
    server = await cyclehttp_server(app)
    response = await fetch(server, target)
    assert response.status == 301, response.raw
    assert response.header("location") == location
    assert response.body == b""


async def test_directory_without_index_html_is_404(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public, index=True)
    server = await cyclehttp_server(app)
    assert (await fetch(server, "/static/empty/")).status == 404
    assert (await fetch(server, "/static/docs/deep/")).status == 404


async def test_index_false_directories_are_404(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public)
    server = await cyclehttp_server(app)
    for target in ("/static", "/static/", "/static/docs", "/static/docs/", "/static/empty/"):
        assert (await fetch(server, target)).status == 404, target
    assert (await fetch(server, "/static/index.html")).body == b"<h1>home</h1>"


async def test_prefix_root(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App([("GET", "/api", "api")])
    app.static("/", public, index=True)
    server = await cyclehttp_server(app)
    assert (await fetch(server, "/")).body == b"<h1>home</h1>"
    assert (await fetch(server, "/a.txt")).body == b"hello, a\n"
    assert (await fetch(server, "/api")).body == b"api"
    assert (await fetch(server, "/docs")).header("location") == "/docs/"
    assert (await fetch(server, b"/../secret.txt")).status == 404


# --- the large-file path (Response.file) ------------------------------------------------


@needs_response_file
async def test_large_file_is_served_from_disk(cyclehttp_server: ServerFactory, public: Path) -> None:
    app = App()
    app.static("/static", public)
    server = await cyclehttp_server(app)
    response = await fetch(server, "/static/large.bin")
    assert response.status == 200, response.raw[:300]
    assert response.body == LARGE
    assert response.header("content-type") == "application/octet-stream"
    head = await fetch(server, "/static/large.bin", "HEAD")
    assert head.status == 200
    assert head.body == b""


@needs_response_file
@pytest.mark.parametrize(
    "name", ["a.txt", "css/site.css", "image.png", "data.json", "caf%C3%A9%20%C3%BC.txt"]
)
async def test_disk_and_prerendered_answers_agree(
    cyclehttp_server: ServerFactory, public: Path, name: str
) -> None:
    memory, disk = App(), App()
    memory.static("/static", public)
    disk.static("/static", public, prerender_max=0)
    one = await fetch(await cyclehttp_server(memory), "/static/" + name)
    other = await fetch(await cyclehttp_server(disk), "/static/" + name)
    assert (one.status, one.body) == (other.status, other.body) == (200, one.body)
    for header in ("content-type", "content-length", "last-modified"):
        assert one.header(header) == other.header(header), header


@needs_response_file
async def test_files_added_after_start_up_are_served_from_disk(
    cyclehttp_server: ServerFactory, public: Path
) -> None:
    app = App()
    app.static("/static", public, index=True)
    server = await cyclehttp_server(app)
    (public / "new.css").write_bytes(b"p {}")
    (public / "empty" / "index.html").write_bytes(b"<p>now</p>")
    (public / "{braces}.txt").write_bytes(b"braces")
    new = await fetch(server, "/static/new.css")
    assert (new.status, new.body) == (200, b"p {}")
    assert new.header("content-type") == "text/css; charset=utf-8"
    assert (await fetch(server, "/static/empty/")).body == b"<p>now</p>"
    assert (await fetch(server, "/static/%7Bbraces%7D.txt")).body == b"braces"


@needs_response_file
async def test_large_index_html_is_served_from_disk(cyclehttp_server: ServerFactory, tmp_path: Path) -> None:
    page = b"<p>" + b"x" * 5000 + b"</p>"
    (tmp_path / "index.html").write_bytes(page)
    app = App()
    plan = app.static("/site", tmp_path, index=True, prerender_max=100)
    assert plan.prerendered_files == 0
    server = await cyclehttp_server(app)
    response = await fetch(server, "/site/")
    assert (response.status, response.body) == (200, page)
    assert response.header("content-type") == "text/html; charset=utf-8"


# --- bad declarations fail at app.static() ----------------------------------------------


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RouteError, match="does not exist"):
        App().static("/static", tmp_path / "nope")


def test_file_as_directory_is_refused(public: Path) -> None:
    with pytest.raises(RouteError, match="is not a directory"):
        App().static("/static", public / "a.txt")


@pytest.mark.parametrize("prefix", ["static", "", "/st{x}", "/a?b", "/a/../b", "/a//b", "/a b", 3])
def test_bad_prefix_is_refused(public: Path, prefix: object) -> None:
    with pytest.raises(RouteError, match="prefix"):
        App().static(prefix, public)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value"), [("prerender_max", -1), ("prerender_total", "big")])
def test_bad_limits_are_refused(public: Path, name: str, value: object) -> None:
    with pytest.raises(RouteError, match=name):
        App().static("/static", public, **{name: value})  # type: ignore[arg-type]


def test_trailing_slash_of_the_prefix_is_ignored(public: Path) -> None:
    app = App()
    app.static("/static/", public)
    assert b"/static/a.txt" in app.compile().exact


def test_a_file_clashing_with_a_declared_route_is_refused(public: Path) -> None:
    app = App([("GET", "/static/a.txt", "mine")])
    with pytest.raises(RouteError, match=r"'/static/a\.txt'.*already declared.*another prefix"):
        app.static("/static", public)
    assert len(app.routes) == 1  # nothing half-declared


def test_a_dynamic_route_answering_a_file_path_is_refused(public: Path) -> None:
    app = App([("POST", "/static/{name}", lambda request: "x")])
    with pytest.raises(RouteError, match=r"/static/\{name\}"):
        app.static("/static", public)


async def test_a_fallback_route_declared_first_is_not_a_clash(
    cyclehttp_server: ServerFactory, public: Path
) -> None:
    app = App([("GET", "/{rest:path}", lambda request: "fallback")])
    app.static("/static", public)
    server = await cyclehttp_server(app)
    assert (await fetch(server, "/static/a.txt")).body == b"hello, a\n"
    assert (await fetch(server, "/elsewhere")).body == b"fallback"


def test_the_same_prefix_twice_is_refused(public: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    app = App()
    app.static("/static", public)
    with pytest.raises(RouteError, match="the files would be served where"):
        app.static("/static", other)


def test_a_route_declared_later_on_a_file_path_names_app_static(public: Path) -> None:
    app = App()
    app.static("/static", public)
    with pytest.raises(RouteError, match=r"duplicate route: GET /static/a\.txt.*app\.static\('/static'"):
        app.add_route("GET", "/static/a.txt", "mine")


# --- content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.html", "text/html; charset=utf-8"),
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.tar.gz", "application/gzip"),
        ("README", "application/octet-stream"),
    ],
)
def test_content_type_is_the_one_response_file_gives(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected

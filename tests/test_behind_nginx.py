"""cyclehttp behind a real nginx: pass-through, keep-alive both sides, and the client address.

nginx runs as a subprocess on 127.0.0.1 with a config written under ``tmp_path``
and proxies to a cyclehttp server started by the test, over TCP (the
``cyclehttp_server`` fixture) and over a Unix socket, with an upstream
keepalive pool and the usual ``X-Forwarded-*`` lines. Skipped when nginx is not
installed (CI installs nginx-light in .ci/run).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cyclehttp import App, Request
from cyclehttp.clock.stats import StatsSnapshot
from cyclehttp.config import Config
from cyclehttp.serving.server import Server
from cyclehttp.testing import TestServer
from cyclehttp.testing.rawclient import RawConnection, RawResponse

ServerFactory = Callable[..., Awaitable[TestServer]]

NGINX_SKIP = "nginx not installed (CI installs nginx-light)"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 10.0
UPSTREAM = "cyclehttp_upstream"


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


NGINX = find_nginx()
pytestmark = pytest.mark.skipif(NGINX is None, reason=NGINX_SKIP)


def whoami(request: Request) -> dict[str, Any]:
    return {
        "client": request.client,
        "scheme": request.scheme,
        "host": request.host,
        "i": request.query.get("i"),
        "xff": request.headers.get("x-forwarded-for"),
    }


def echo(request: Request) -> bytes:
    return request.body


APP = App([("GET", "/", "Hello, World!"), ("GET", "/whoami", whoami), ("POST", "/echo", echo)])


# -- nginx ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _temp_paths(nginx: str, tmp: Path) -> str:
    """Temp directories under ``tmp``: the compiled-in ones (/var/lib/nginx) need root."""
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10, check=False).stderr
    lines = [f"client_body_temp_path {tmp}/body;", f"proxy_temp_path {tmp}/proxy;"]
    for module in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in built:
            lines.append(f"{module}_temp_path {tmp}/{module};")
    return "\n    ".join(lines)


def nginx_conf(tmp: Path, port: int, upstream: str, temp_paths: str) -> str:
    # As root the master would hand the worker to "nobody", who cannot read tmp_path.
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    return f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{ worker_connections 128; }}
http {{
    access_log {tmp}/access.log;
    {temp_paths}
    client_max_body_size 4m;
    upstream {UPSTREAM} {{
        server {upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{UPSTREAM};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_connect_timeout 5s;
            proxy_read_timeout 10s;
        }}
    }}
}}
"""


def _wait_ready(process: subprocess.Popen[bytes], port: int, tmp: Path) -> bool:
    """True once nginx accepts on ``port``; False when it exited (e.g. the port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    _stop(process)
    pytest.fail(f"nginx did not accept on 127.0.0.1:{port} within {START_TIMEOUT} s:\n{_errors(tmp)}")


def _errors(tmp: Path) -> str:
    parts = [p.read_text(errors="replace") for p in (tmp / "stderr.log", tmp / "error.log") if p.exists()]
    return "\n".join(parts) or "(no error output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: the master stops its worker, then exits
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """``port = nginx(upstream)``: start nginx in front of ``upstream`` (``host:port`` or ``unix:path``)."""
    assert NGINX is not None
    started: list[subprocess.Popen[bytes]] = []
    temp_paths = _temp_paths(NGINX, tmp_path)

    def start(upstream: str) -> int:
        for attempt in range(2):  # the port found free may be taken before nginx binds it: retry once
            port = _free_port()
            (tmp_path / "nginx.conf").write_text(nginx_conf(tmp_path, port, upstream, temp_paths))
            with open(tmp_path / "stderr.log", "wb") as stderr:
                process = subprocess.Popen(
                    [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            started.append(process)
            if _wait_ready(process, port, tmp_path):
                return port
            if attempt == 0 and "in use" in _errors(tmp_path):
                continue
            pytest.fail(f"nginx exited with status {process.returncode}:\n{_errors(tmp_path)}")
        raise AssertionError("unreachable")

    try:
        yield start
    finally:
        for process in started:
            _stop(process)


# -- the cyclehttp server behind it -------------------------------------------------------------


@dataclass
class Upstream:
    address: str  # for nginx's "server" line
    stats: Callable[[], StatsSnapshot]


@asynccontextmanager
async def unix_server(**options: Any) -> AsyncIterator[Upstream]:
    """A cyclehttp Server on a Unix socket under a short /tmp path (sun_path has 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="cyh-", dir="/tmp")
    path = os.path.join(directory, "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server = Server(APP, Config(**options))
    try:
        listener.bind(path)
        os.chmod(path, 0o666)
        listener.listen(128)
        listener.setblocking(False)
        await asyncio.wait_for(server.start(sock=listener), IO_TIMEOUT)
        yield Upstream(f"unix:{path}", server.stats.snapshot)
    finally:
        await asyncio.wait_for(server.shutdown(5.0), IO_TIMEOUT)
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["tcp", "unix"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def upstream(kind: str, cyclehttp_server: ServerFactory, **options: Any) -> AsyncIterator[Upstream]:
    if kind == "tcp":
        server = await cyclehttp_server(APP, **options)
        yield Upstream(f"127.0.0.1:{server.port}", lambda: server.stats)
    else:
        async with unix_server(**options) as running:
            yield running


async def get(connection: RawConnection, target: str, *headers: str) -> RawResponse:
    await connection.send(request_bytes("GET", target, *headers))
    return await connection.read_response(timeout=IO_TIMEOUT)


def request_bytes(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: example.test", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- tests ------------------------------------------------------------------------------------


async def test_responses_pass_through_intact(
    cyclehttp_server: ServerFactory, nginx: Callable[[str], int], transport: str
) -> None:
    async with upstream(transport, cyclehttp_server, proxy_headers=True) as up:
        port = nginx(up.address)
        async with await RawConnection.open("127.0.0.1", port, timeout=IO_TIMEOUT) as connection:
            static = await get(connection, "/")
            assert (static.status, static.body) == (200, b"Hello, World!")
            body = os.urandom(1024 * 1024)
            await connection.send(request_bytes("POST", "/echo", body=body))
            echoed = await connection.read_response(timeout=IO_TIMEOUT)
            assert echoed.status == 200
            assert echoed.body == body, "the 1 MiB body came back changed"


async def test_keep_alive_and_pipelining_through_nginx(
    cyclehttp_server: ServerFactory, nginx: Callable[[str], int], transport: str
) -> None:
    async with upstream(transport, cyclehttp_server, proxy_headers=True) as up:
        port = nginx(up.address)
        requests = 0
        for _ in range(3):  # three client connections, each with a pipelined burst
            async with await RawConnection.open("127.0.0.1", port, timeout=IO_TIMEOUT) as connection:
                burst = 8
                await connection.send(b"".join(request_bytes("GET", f"/whoami?i={i}") for i in range(burst)))
                responses = await connection.read_responses(burst, timeout=IO_TIMEOUT)
                assert [r.json()["i"] for r in responses] == [str(i) for i in range(burst)]
                assert all(r.status == 200 for r in responses)
                assert (await get(connection, "/")).status == 200, "the client connection stayed open"
                requests += burst + 1
        stats = up.stats()
        assert stats.requests >= requests
        # nginx keeps its upstream connections alive (keepalive 16) and reuses them.
        assert stats.connections_accepted <= 3, f"{stats.connections_accepted} upstream connections"


async def test_handler_sees_the_client_from_x_forwarded_for(
    cyclehttp_server: ServerFactory, nginx: Callable[[str], int], transport: str
) -> None:
    trust = "127.0.0.1" if transport == "tcp" else "unix"
    async with upstream(transport, cyclehttp_server, proxy_headers=True, forwarded_allow_ips=trust) as up:
        port = nginx(up.address)
        async with await RawConnection.open("127.0.0.1", port, timeout=IO_TIMEOUT) as connection:
            seen = (await get(connection, "/whoami")).json()
    assert seen["xff"] == "127.0.0.1"
    assert seen["client"] == ["127.0.0.1", 0]
    assert (seen["scheme"], seen["host"]) == ("http", "example.test")


@pytest.mark.asyncio
async def test_a_spoofed_x_forwarded_for_is_not_believed_over_a_unix_socket(
    nginx: Callable[[str], int],
) -> None:
    """Only nginx (the Unix-socket peer) is trusted: the entry it appended is the client."""
    async with unix_server(proxy_headers=True, forwarded_allow_ips="unix") as up:
        port = nginx(up.address)
        async with await RawConnection.open("127.0.0.1", port, timeout=IO_TIMEOUT) as connection:
            seen = (await get(connection, "/whoami", "X-Forwarded-For: 6.6.6.6")).json()
    assert seen["xff"] == "6.6.6.6, 127.0.0.1"
    assert seen["client"] == ["127.0.0.1", 0]


async def test_proxy_headers_off_the_handler_sees_nginx(
    cyclehttp_server: ServerFactory, nginx: Callable[[str], int], transport: str
) -> None:
    async with upstream(transport, cyclehttp_server, forwarded_allow_ips="*") as up:
        port = nginx(up.address)
        async with await RawConnection.open("127.0.0.1", port, timeout=IO_TIMEOUT) as connection:
            seen = (await get(connection, "/whoami", "X-Forwarded-For: 6.6.6.6")).json()
    assert seen["xff"] == "6.6.6.6, 127.0.0.1", "the headers arrive, and are not used"
    if transport == "tcp":
        assert seen["client"][0] == "127.0.0.1" and seen["client"][1] != 0, "nginx's own socket"
    else:
        assert seen["client"] is None, "a Unix-socket peer has no address"
    assert (seen["scheme"], seen["host"]) == ("http", UPSTREAM), "nginx's Host: $proxy_host"

"""cyclehttp side by side with its peers: a bare uvloop+httptools floor, nginx, uvicorn, granian, socketify.

Usage: python benchmarks/peers.py [--rounds 3] [--duration 5]
                                  [--servers cyclehttp,bare,nginx,uvicorn,granian,socketify]
                                  [--modes keepalive,close,pipelined,json,echo] [--json OUT]
                                  [--chart OUT.png]

Every server answers the same bodies: ``GET /`` ``Hello, World!`` (text/plain),
``GET /users/1`` ``{"id":1}`` (application/json), ``POST /echo`` the request body.
cyclehttp serves examples/hello.py with the metrics page on; ``bare``
(benchmarks/peers/bare.py) is the floor: uvloop + httptools and nothing else;
uvicorn and granian serve the raw ASGI app benchmarks/peers/asgi_app.py;
socketify (uWebSockets under Python) serves benchmarks/peers/socketify_app.py,
written to its own API, in one process; nginx serves only ``GET /`` (``return
200``), so its json and echo cells show "-"; its keepalive_requests is raised so
that it keeps connections open as the others do.

Each server is pinned to core 0 and loaded by ``wrk -t1 -c64 --latency`` pinned
to core 1. Modes: keepalive (GET /), close (GET /, close.lua), pipelined (GET /,
16 per write, pipeline.lua), json (GET /users/1), echo (POST /echo, 1 KiB,
peers/echo.lua). Per server and mode: req/s, p50 and p99 latency as wrk prints
them (for pipelined, where wrk's percentiles are wrong, the mean time per batch
instead: see pipelined_latency), the server's CPU per request (user + system time of
its whole process tree from /proc, over the run, / requests) and peak RSS
(VmHWM at the end of the round, summed over the serving processes: the leaves
of the process tree, i.e. nginx's and granian's worker).

Rounds are interleaved: each round starts every server once, then for each mode
loads the servers in turn (A B C A B C ...), so slow drifts of the machine hit
all servers alike; the figures shown are medians over rounds. Whatever a server
or a run fails with is shown in its cell, and the harness goes on. ``--chart``
draws the medians (req/s per mode and server) into a PNG with
benchmarks/peers/chart.py.

Installs what it lacks: wrk and nginx-light with apt-get, and uvicorn, granian,
socketify and matplotlib (for the chart) in their own venv
(benchmarks/.venv-peers), never into the project. Never run in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PEERS = BENCH / "peers"
VENV = BENCH / ".venv-peers"
VENV_PACKAGES = (
    "uvicorn==0.54.0",
    "httptools",
    "uvloop",
    "granian==2.8.7",
    "socketify==0.0.31",
    "matplotlib==3.11.2",
)
VENV_SERVERS = frozenset({"uvicorn", "granian", "socketify"})
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
SERVER_CORE = "0"
WRK_CORE = "1"
CONNECTIONS = 64
PIPELINE_DEPTH = 16
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
ECHO_BODY = b"x" * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
LATENCY_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}

Cell = dict[str, Any]  # one server x mode x round: the figures, or {"failed": reason}


class Failed(Exception):
    """A server that would not start, or a run that gave no figures; the message is the reason."""


@dataclass(frozen=True)
class Mode:
    """A load pattern: the wrk script and URL path, and the answer the server must give to it."""

    name: str
    title: str
    path: str
    script: Path | None
    method: str = "GET"
    body: bytes | None = None
    expect: bytes = b"Hello, World!"


MODES = {
    mode.name: mode
    for mode in (
        Mode("keepalive", "GET / keep-alive", "/", None),
        Mode("close", "GET / Connection: close", "/", BENCH / "close.lua"),
        Mode("pipelined", "GET / pipelined x16 (latency per batch of 16)", "/", BENCH / "pipeline.lua"),
        Mode("json", "GET /users/1 keep-alive (JSON)", "/users/1", None, expect=b'{"id":1}'),
        Mode(
            "echo", "POST /echo 1 KiB keep-alive", "/echo", PEERS / "echo.lua", "POST", ECHO_BODY, ECHO_BODY
        ),
    )
}


# --- installing what is missing ----------------------------------------------------------------


def ensure_system_tools(servers: list[str]) -> None:
    """Install wrk and nginx-light with apt-get if shutil.which does not find them."""
    for tool in ("taskset",):
        if not shutil.which(tool, path=SBIN_PATH):
            raise SystemExit(f"{tool} is missing (util-linux)")
    wanted = {"wrk": "wrk", "nginx": "nginx-light"}
    if "nginx" not in servers:
        del wanted["nginx"]
    missing = [package for tool, package in wanted.items() if not shutil.which(tool, path=SBIN_PATH)]
    if not missing:
        return
    print(f"installing with apt-get: {' '.join(missing)}", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def venv_versions() -> dict[str, str]:
    """The versions of the packages in benchmarks/.venv-peers (empty if there is no venv)."""
    if not venv_python().exists():
        return {}
    names = [spec.split("==")[0] for spec in VENV_PACKAGES]
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    result = subprocess.run([venv_python(), "-c", code, *names], capture_output=True, text=True)
    return dict(json.loads(result.stdout)) if result.returncode == 0 else {}


def ensure_venv() -> None:
    """Create benchmarks/.venv-peers and pip-install the pinned peers into it, unless already there."""
    have = venv_versions()
    wanted = {spec.split("==")[0]: spec.partition("==")[2] for spec in VENV_PACKAGES}
    if all(name in have and (not pin or have[name] == pin) for name, pin in wanted.items()):
        return
    if not venv_python().exists():
        print(f"creating venv {VENV.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f"installing into {VENV.relative_to(ROOT)}: {' '.join(VENV_PACKAGES)}", flush=True)
    pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *VENV_PACKAGES], check=True)


# --- the servers -------------------------------------------------------------------------------


def nginx_config(port: int, workdir: Path) -> Path:
    """Write a one-location nginx.conf into workdir. keepalive_requests is raised from its default
    of 1000 so that nginx, like the others, never closes a keep-alive connection by itself."""
    config = workdir / "nginx.conf"
    config.write_text(
        f"""daemon off;
master_process on;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/client_body;
    keepalive_requests 100000000;
    server {{
        listen 127.0.0.1:{port};
        location = / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}
}}
"""
    )
    return config


def command_cyclehttp(port: int, workdir: Path) -> list[str]:
    """The project's example app, metrics page on (as the targets are stated)."""
    app = [sys.executable, "-m", "cyclehttp", "examples.hello:routes", "--port", str(port)]
    return [*app, "--log-level", "warning", "--metrics-path", "/metrics"]


def command_bare(port: int, workdir: Path) -> list[str]:
    """The floor, on the project's own uvloop and httptools."""
    return [sys.executable, str(PEERS / "bare.py"), "--port", str(port)]


def command_nginx(port: int, workdir: Path) -> list[str]:
    """nginx in the foreground with its config, pid and logs in workdir."""
    nginx = shutil.which("nginx", path=SBIN_PATH) or "nginx"
    config = nginx_config(port, workdir)
    return [nginx, "-p", str(workdir), "-c", str(config), "-e", str(workdir / "error.log")]


def command_uvicorn(port: int, workdir: Path) -> list[str]:
    """uvicorn on uvloop and httptools, the same stack cyclehttp is built on."""
    uvicorn = [str(VENV / "bin" / "uvicorn"), "asgi_app:app", "--host", "127.0.0.1", "--port", str(port)]
    options = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    return [*uvicorn, *options, "--app-dir", str(PEERS)]


def command_granian(port: int, workdir: Path) -> list[str]:
    """One worker, default runtime threads; HTTP/1 only and no WebSocket, as the other servers."""
    granian = [
        str(VENV / "bin" / "granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    options = ["--workers", "1", "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning"]
    return [*granian, *options, "--working-dir", str(PEERS), "asgi_app:app"]


def command_socketify(port: int, workdir: Path) -> list[str]:
    """socketify's own App (uWebSockets), one process and one thread, plain (not async) handlers.
    Its loop polls uWebSockets from asyncio's call_soon while busy, so it takes its whole core under
    load whatever the work: its us/req is about 1e6 / req/s, not what a request costs it."""
    return [str(venv_python()), str(PEERS / "socketify_app.py"), "--port", str(port)]


@dataclass(frozen=True)
class Server:
    """A peer: how to start it, and which modes it serves."""

    name: str
    command: Callable[[int, Path], list[str]]
    modes: frozenset[str] = frozenset(MODES)


SERVERS = {
    server.name: server
    for server in (
        Server("cyclehttp", command_cyclehttp),
        Server("bare", command_bare),
        Server("nginx", command_nginx, frozenset({"keepalive", "close", "pipelined"})),
        Server("uvicorn", command_uvicorn),
        Server("granian", command_granian),
        # All modes. In close mode socketify closes after its answer, as it must, but does not say
        # "Connection: close" in it: wrk takes the connection as kept alive, sends on it, reads the
        # end and counts a read error before it reconnects, so its close cell shows about one socket
        # error per request. The figures are still those of one connection per request.
        Server("socketify", command_socketify),
    )
}


@dataclass
class Running:
    """A started server: its process (the head of its own session), port and log file."""

    server: Server
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    command: list[str] = field(default_factory=list)


def free_port() -> int:
    """A port the kernel just gave out on 127.0.0.1 (bound to 0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 2) -> str:
    """The last lines a server wrote (its output, and nginx's error.log beside it), on one line,
    for a "failed" cell: a traceback ends with the exception, nginx's log with its complaint."""
    text: list[str] = []
    for log in (path, path.parent / "error.log"):
        with contextlib.suppress(OSError):
            text += log.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "no output"


def start(server: Server, workdir: Path) -> Running:
    """Start a server pinned to core 0 in its own session and wait until it answers GET /."""
    port = free_port()
    serverdir = workdir / server.name
    serverdir.mkdir(exist_ok=True)
    log = serverdir / "output.log"
    command = server.command(port, serverdir)
    cwd = PEERS if server.name == "granian" else ROOT
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *command],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Running(server, port, process, log, command)
    try:
        wait_ready(running)
    except BaseException:
        stop(running)
        raise
    return running


def wait_ready(running: Running) -> None:
    """Poll GET / for up to READY_TIMEOUT seconds; Failed if the server exits or never answers."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise Failed(f"exited with {running.process.returncode}: {log_tail(running.log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{running.port}/", timeout=1) as response:
                response.read()
                return
        except OSError:
            time.sleep(0.1)
    raise Failed(f"no answer to GET / within {READY_TIMEOUT:.0f}s: {log_tail(running.log)}")


def stop(running: Running) -> None:
    """SIGTERM the server, SIGKILL its process group after STOP_TIMEOUT, and reap it."""
    process = running.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"  {running.server.name} ignored SIGTERM for {STOP_TIMEOUT:.0f}s: SIGKILL", flush=True)
    # The group is the session start() created for this server: sweep any worker left behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# --- measuring ---------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> dict[int, list[int]]:
    """The root process and its descendants, each with its children, from a scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(proc_stat(int(entry.name))[1]), []).append(int(entry.name))
    tree: dict[int, list[int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        tree[pid] = children.get(pid, [])
        todo.extend(tree[pid])
    return tree


def cpu_ticks(root: int) -> dict[int, int]:
    """User + system clock ticks of every process in the tree, by pid."""
    ticks = {}
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError):
            fields = proc_stat(pid)
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def vm_hwm_mib(pid: int) -> float:
    """A process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss(root: int) -> dict[str, float]:
    """Peak RSS of the serving processes (the leaves of the tree: nginx's or granian's worker, or the
    server itself when it is one process), and of the whole tree."""
    tree = process_tree(root)
    leaves = [pid for pid, kids in tree.items() if not kids]
    return {
        "rss_mib": round(sum(vm_hwm_mib(pid) for pid in leaves), 1),
        "rss_tree_mib": round(sum(vm_hwm_mib(pid) for pid in tree), 1),
        "processes": len(tree),
    }


def check_answer(mode: Mode, port: int) -> None:
    """Send the mode's request once; Failed unless the server answers 200 with the expected body."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{mode.path}", data=mode.body, method=mode.method
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        raise Failed(f"{mode.method} {mode.path} answered {error.code}") from None
    except OSError as error:
        raise Failed(f"{mode.method} {mode.path}: {error}") from None
    if status != 200 or body != mode.expect:
        raise Failed(f"{mode.method} {mode.path} answered {status} {body[:40]!r}")


def wrk_command(mode: Mode, port: int, duration: int) -> list[str]:
    command = ["taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency"]
    if mode.script:
        command += ["-s", str(mode.script)]
    return [*command, f"http://127.0.0.1:{port}{mode.path}"]


def latency_ms(output: str, percentile: int) -> float:
    """A percentile from wrk's "Latency Distribution" block, in milliseconds."""
    found = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    if not found:
        raise Failed(f"no {percentile}% latency in wrk's output")
    return float(found.group(1)) * LATENCY_UNITS_MS[found.group(2)]


def pipelined_latency(cell: Cell) -> None:
    """Replace wrk's percentiles of a pipelined run by the mean time per batch.

    wrk 4.1 "corrects" its latency histogram for coordinated omission with an interval of
    runtime / (responses / connections). Pipelining 16 per write makes that interval 16 times too
    short, and the samples it adds fall below the histogram's minimum, where its percentile walk
    never looks: the percentiles come out as 0 or too high. So they are kept only as wrk printed
    them (wrk_percentiles_ms), and the mean time per batch is taken from Little's law instead:
    64 connections each keep one batch of 16 in flight, so a batch takes 64 x 16 / (req/s).
    """
    cell["wrk_percentiles_ms"] = {"50": cell.pop("p50_ms"), "99": cell.pop("p99_ms")}
    cell["p50_ms"] = cell["p99_ms"] = None
    cell["batch_mean_ms"] = CONNECTIONS * PIPELINE_DEPTH / cell["rps"] * 1e3


def parse_wrk(output: str) -> Cell:
    """req/s, requests, p50/p99 and error counts from wrk's output; Failed if it served nothing."""
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not requests or not rate or int(requests.group(1)) == 0:
        raise Failed(f"wrk completed no request: {' | '.join(output.strip().splitlines()[-2:])}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    cell: Cell = {
        "requests": int(requests.group(1)),
        "rps": float(rate.group(1)),
        "p50_ms": latency_ms(output, 50),
        "p99_ms": latency_ms(output, 99),
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }
    if cell["non_2xx"]:
        raise Failed(f"{cell['non_2xx']} of {cell['requests']} responses were not 2xx")
    return cell


def run_wrk(mode: Mode, port: int, duration: int) -> Cell:
    """Run wrk on core 1 against one server and parse what it printed."""
    env = dict(os.environ, PIPELINE_DEPTH=str(PIPELINE_DEPTH))
    try:
        result = subprocess.run(
            wrk_command(mode, port, duration), capture_output=True, text=True, env=env, timeout=duration + 30
        )
    except subprocess.TimeoutExpired:
        raise Failed(f"wrk did not finish within {duration + 30}s") from None
    if result.returncode != 0:
        raise Failed(f"wrk exited with {result.returncode}: {result.stderr.strip()[-200:]}")
    return parse_wrk(result.stdout)


def measure(running: Running, mode: Mode, duration: int) -> Cell:
    """One run: check the answer, then wrk, with the server tree's CPU time read around it."""
    if running.process.poll() is not None:
        raise Failed(f"server exited with {running.process.returncode}: {log_tail(running.log)}")
    check_answer(mode, running.port)
    before = cpu_ticks(running.process.pid)
    cell = run_wrk(mode, running.port, duration)
    after = cpu_ticks(running.process.pid)
    if mode.name == "pipelined":
        pipelined_latency(cell)
    used = sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / CLK_TCK
    cell["cpu_s"] = used
    cell["us_per_req"] = used / cell["requests"] * 1e6
    return cell


# --- rounds ------------------------------------------------------------------------------------


def start_all(servers: list[str], workdir: Path, report: dict[str, Any], running: dict[str, Running]) -> None:
    """Start every server of a round into running; one that fails is recorded in report and left out."""
    for name in servers:
        try:
            running[name] = start(SERVERS[name], workdir)
        except Failed as failure:
            print(f"  {name}: failed to start: {failure}", flush=True)
            report[name] = {"failed": f"did not start: {failure}", "modes": {}}


def run_round(number: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One round: start every server, load them in turn for each mode, read their peak RSS, stop them."""
    report: dict[str, Any] = {}
    running: dict[str, Running] = {}
    try:
        start_all(args.servers, workdir, report, running)
        for name, server in running.items():
            report[name] = {"command": server.command, "modes": {}}
        for mode_name in args.modes:
            for name, server in running.items():
                if mode_name in server.server.modes:
                    report[name]["modes"][mode_name] = run_cell(
                        number, server, MODES[mode_name], args.duration
                    )
        for name, server in running.items():
            with contextlib.suppress(OSError):
                report[name].update(peak_rss(server.process.pid))
    finally:
        for server in running.values():
            stop(server)
    return report


def run_cell(number: int, running: Running, mode: Mode, duration: int) -> Cell:
    """measure(), turning a failure into a {"failed": reason} cell, with one progress line."""
    try:
        cell = measure(running, mode, duration)
    except Failed as failure:
        cell = {"failed": str(failure)}
    label = f"  round {number + 1} {mode.name:9s} {running.server.name:9s}"
    if "failed" in cell:
        print(f"{label} failed: {cell['failed']}", flush=True)
    else:
        print(f"{label} {cell['rps']:>10,.0f} req/s {cell['us_per_req']:6.1f} us/req", flush=True)
    return cell


# --- summaries ---------------------------------------------------------------------------------

METRICS = ("rps", "p50_ms", "p99_ms", "us_per_req", "batch_mean_ms")


def median_of(cells: list[Cell], key: str) -> float | None:
    """The median of a figure over cells, or None where the cells do not have it (or have None)."""
    values = [cell.get(key) for cell in cells]
    return statistics.median(v for v in values if v is not None) if None not in values else None


def median_cell(rounds: list[dict[str, Any]], server: str, mode: str) -> Cell | None:
    """Medians over the rounds in which the cell has figures; None if the server does not serve mode."""
    if mode not in SERVERS[server].modes:
        return None
    cells = [r[server]["modes"].get(mode) or {"failed": r[server].get("failed", "not run")} for r in rounds]
    good = [cell for cell in cells if "failed" not in cell]
    if not good:
        return {"failed": cells[0]["failed"]}
    median: Cell = {key: median_of(good, key) for key in METRICS}
    median["rounds"] = len(good)
    median["socket_errors"] = sum(cell["socket_errors"] for cell in good)
    rss = [r[server]["rss_mib"] for r in rounds if "rss_mib" in r[server]]
    median["rss_mib"] = statistics.median(rss) if rss else None
    return median


def medians(rounds: list[dict[str, Any]], servers: list[str], modes: list[str]) -> dict[str, dict[str, Any]]:
    return {server: {mode: median_cell(rounds, server, mode) for mode in modes} for server in servers}


def format_row(server: str, cell: Cell | None, rounds: int) -> str:
    """One table line: server, req/s, p50, p99, us/req, peak RSS; "-" or "failed: ..." when no figures."""
    if cell is None:
        return f"{server:10s} {'-':>10s}"
    if "failed" in cell:
        return f"{server:10s} {'failed':>10s}  {cell['failed'][:90]}"
    rss = f"{cell['rss_mib']:7.1f} MiB" if cell["rss_mib"] is not None else f"{'?':>11s}"
    notes = []
    if cell["rounds"] < rounds:
        notes.append(f"{cell['rounds']}/{rounds} rounds")
    if cell["socket_errors"]:
        notes.append(f"{cell['socket_errors']} socket errors")
    note = f"  ({', '.join(notes)})" if notes else ""
    p50, p99 = (
        f"{cell[key]:8.2f}" if cell[key] is not None else f"{'n/a':>8s}" for key in ("p50_ms", "p99_ms")
    )
    return f"{server:10s} {cell['rps']:>10,.0f} {p50} {p99} {cell['us_per_req']:7.1f} {rss}{note}"


def print_tables(summary: dict[str, dict[str, Any]], modes: list[str], rounds: int, duration: int) -> None:
    print(f"\nMedians of {rounds} interleaved rounds of {duration}s; wrk -t1 -c{CONNECTIONS} on core 1,")
    print("each server on core 0. us/req: server CPU (user+system) per request; peak RSS: VmHWM.")
    for mode in modes:
        print(f"\n{mode}: {MODES[mode].title}")
        print(f"{'server':10s} {'req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'us/req':>7s} {'peak RSS':>11s}")
        for server, cells in summary.items():
            print(format_row(server, cells[mode], rounds))
        if mode == "pipelined":
            print_batch_means(summary)


def print_batch_means(summary: dict[str, dict[str, Any]]) -> None:
    """The pipelined mode's latency line: mean time per batch, as wrk's percentiles are unusable there."""
    means = [
        f"{server} {cells['pipelined']['batch_mean_ms']:.2f}"
        for server, cells in summary.items()
        if figure(cells["pipelined"], "batch_mean_ms") is not None
    ]
    print("n/a: wrk 4.1's percentiles are wrong when pipelining (see pipelined_latency in peers.py).")
    formula = f"{CONNECTIONS} x {PIPELINE_DEPTH} / req/s"
    print(f"Mean ms per batch of {PIPELINE_DEPTH} ({formula}): {', '.join(means) or '-'}")


@dataclass(frozen=True)
class Target:
    """A figure for cyclehttp: a metric of a mode, divided by a peer's (or absolute if peer is None).
    The peer's figure is from the same mode, or from peer_mode when given."""

    label: str
    mode: str
    metric: str
    peer: str | None
    unit: str = "x"
    peer_mode: str | None = None

    @property
    def their_mode(self) -> str:
        return self.peer_mode or self.mode


TARGETS = (
    Target("keepalive req/s / nginx", "keepalive", "rps", "nginx"),
    Target("keepalive us/req / bare", "keepalive", "us_per_req", "bare"),
    Target("pipelined req/s", "pipelined", "rps", None, "req/s"),
    Target("close req/s / nginx", "close", "rps", "nginx"),
    Target("json req/s / uvicorn", "json", "rps", "uvicorn"),
    Target("json req/s / socketify GET /", "json", "rps", "socketify", peer_mode="keepalive"),
    Target("echo req/s / uvicorn", "echo", "rps", "uvicorn"),
    Target("peak RSS", "", "rss_mib", None, "MiB"),
)


def figure(cell: Cell | None, metric: str) -> float | None:
    if not cell or "failed" in cell:
        return None
    value = cell.get(metric)
    return float(value) if value is not None else None


def round_ratios(rounds: list[dict[str, Any]], target: Target) -> list[float]:
    """The target's ratio in each round where both cyclehttp and the peer have figures."""
    ratios = []
    assert target.peer is not None
    for report in rounds:
        ours = figure(report.get("cyclehttp", {}).get("modes", {}).get(target.mode), target.metric)
        theirs = figure(report.get(target.peer, {}).get("modes", {}).get(target.their_mode), target.metric)
        if ours is not None and theirs:
            ratios.append(ours / theirs)
    return ratios


def target_value(summary: dict[str, dict[str, Any]], target: Target) -> Cell:
    """A target's figure from the medians, with the per-round range for ratios; or why it is missing."""
    ours = summary.get("cyclehttp", {})
    if target.metric == "rss_mib":
        values = [figure(cell, "rss_mib") for cell in ours.values()]
        found = next((v for v in values if v is not None), None)
        return {"value": found} if found is not None else {"missing": "cyclehttp has no figures"}
    if target.mode not in ours:
        return {"missing": f"mode {target.mode} not run"}
    value = figure(ours[target.mode], target.metric)
    if target.peer is None or value is None:
        return {"value": value} if value is not None else {"missing": "cyclehttp has no figures"}
    peer = figure(summary.get(target.peer, {}).get(target.their_mode), target.metric)
    if not peer:
        return {"missing": f"{target.peer} has no figures"}
    return {"value": value / peer}


def ratio_lines(summary: dict[str, dict[str, Any]], rounds: list[dict[str, Any]]) -> tuple[list[str], Cell]:
    """The printed target lines (ratios of medians, per-round min..max) and the same as JSON."""
    lines, data = [], {}
    for target in TARGETS:
        result = target_value(summary, target)
        if target.peer and "value" in result:
            per_round = round_ratios(rounds, target)
            result["per_round"] = per_round
            span = f"  (per round {min(per_round):.2f}..{max(per_round):.2f})" if per_round else ""
            text = f"{result['value']:.2f}x{span}"
        elif "value" in result:
            precision = 0 if target.unit == "req/s" else 1
            text = f"{result['value']:,.{precision}f} {target.unit}"
        else:
            text = f"- ({result['missing']})"
        lines.append(f"  {target.label:29s} {text}")
        data[target.label] = result
    return lines, data


# --- the run -----------------------------------------------------------------------------------


def command_output(command: list[str]) -> str:
    """The first line a version command prints (stdout or stderr), or "?"."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        text = (result.stdout + result.stderr).strip()
        return text.splitlines()[0] if text else "?"
    return "?"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def environment() -> dict[str, Any]:
    """Date, machine and the versions of everything measured, for the JSON report."""
    local = {}
    for name in ("cyclehttp", "uvloop", "httptools"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            local[name] = importlib.metadata.version(name)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": command_output(["uname", "-m"]),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "project_env": local,
        "peers_venv": venv_versions(),
        "wrk": command_output(["wrk", "-v"]),
        "nginx": command_output([shutil.which("nginx", path=SBIN_PATH) or "nginx", "-v"]),
    }


def estimate_seconds(servers: list[str], modes: list[str], rounds: int, duration: int) -> float:
    """Rough wall time: every run takes its duration plus ~1 s, every start and stop ~3 s."""
    runs = sum(1 for s in servers for m in modes if m in SERVERS[s].modes)
    return rounds * (runs * (duration + 1.0) + len(servers) * 3.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, in run order")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--json", type=Path, help="also write every round's figures and the medians here")
    parser.add_argument("--chart", type=Path, help="also draw the median req/s into this PNG")
    args = parser.parse_args()
    args.servers = choices(parser, "--servers", args.servers, SERVERS)
    args.modes = choices(parser, "--modes", args.modes, MODES)
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    return args


def choices(parser: argparse.ArgumentParser, option: str, value: str, known: dict[str, Any]) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"{option}: unknown {unknown or 'empty'}; choose from {','.join(known)}")
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so the servers are stopped as on Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    args = parse_args()
    ensure_system_tools(args.servers)
    if VENV_SERVERS & set(args.servers) or args.chart:
        ensure_venv()
    estimate = estimate_seconds(args.servers, args.modes, args.rounds, args.duration)
    shape = f"{args.rounds} rounds x {len(args.modes)} modes x {len(args.servers)} servers"
    print(f"{shape}, {args.duration}s per run: estimated {estimate / 60:.1f} min", flush=True)
    began = time.monotonic()
    rounds: list[dict[str, Any]] = []
    with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="cyclehttp-peers-") as workdir:
        for number in range(args.rounds):
            rounds.append(run_round(number, args, Path(workdir)))
    summary = medians(rounds, args.servers, args.modes)
    print_tables(summary, args.modes, args.rounds, args.duration)
    lines, ratios = ratio_lines(summary, rounds)
    print("\ncyclehttp targets (ratios of the medians):")
    print("\n".join(lines))
    elapsed = time.monotonic() - began
    print(f"\ntook {elapsed / 60:.1f} min")
    if not args.json and not args.chart:
        return
    report = json_report(args, rounds, summary, ratios, elapsed)
    if args.json:
        write_json(report, args.json)
    if args.chart:
        with tempfile.TemporaryDirectory(prefix="cyclehttp-peers-chart-") as tmp:
            results = args.json or write_json(report, Path(tmp) / "results.json", quiet=True)
            draw_chart(results, args.chart)


def json_report(
    args: argparse.Namespace,
    rounds: list[dict[str, Any]],
    summary: dict[str, dict[str, Any]],
    ratios: Cell,
    elapsed: float,
) -> dict[str, Any]:
    """Every round's raw figures, the medians and the targets, with the machine and versions."""
    return {
        "environment": environment(),
        "config": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "servers": args.servers,
            "modes": {name: MODES[name].title for name in args.modes},
            "wrk": f"taskset -c {WRK_CORE} wrk -t1 -c{CONNECTIONS} -d{args.duration}s --latency",
            "server_core": SERVER_CORE,
            "pipeline_depth": PIPELINE_DEPTH,
            "echo_body_bytes": len(ECHO_BODY),
        },
        "rounds": rounds,
        "medians": summary,
        "targets": ratios,
        "elapsed_s": round(elapsed, 1),
    }


def write_json(report: dict[str, Any], path: Path, quiet: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if not quiet:
        print(f"wrote {path}")
    return path


def draw_chart(results: Path, out: Path) -> None:
    """Run benchmarks/peers/chart.py with the venv's python (it has matplotlib) on a results JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(venv_python()), str(PEERS / "chart.py"), str(results), str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"chart.py exited with {result.returncode}: {result.stderr.strip()[-500:]}")
    print(f"wrote chart {out}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # The servers were stopped by run_round's finally on the way out.
        raise SystemExit("\ninterrupted: servers stopped, no results") from None

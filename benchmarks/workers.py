"""--workers: throughput with 1 and 2 workers, and how evenly 2 workers share the load.

Runs ``python -m cyclehttp examples.hello:routes`` three ways, in interleaved
rounds (so drift of the machine hits every configuration alike):

* ``1 worker``: today's single process, pinned to core 0;
* ``2 workers shared``: ``--workers 2 --balance shared``, one listening socket
  that both workers accept on;
* ``2 workers reuseport``: ``--workers 2 --balance reuseport``, one
  SO_REUSEPORT socket per worker.

The supervisor and its workers are allowed both cores (``taskset -c 0,1``;
workers inherit the affinity); ``wrk -t1 -c64`` is pinned to core 1. On a
2-core machine the load generator and one worker must share a core, so two
workers cannot double the figure of one: the point of the 2-worker runs is the
*share* of requests each worker served, read from the metrics page's
``cyclehttp_worker_requests_total{worker=...}`` before and after each run.

Modes: keep-alive ``GET /`` (wrk opens its 64 connections once, so the
balance is decided at accept time for the whole run) and ``Connection:
close`` (``close.lua``, every request is a new connection to balance).

Usage: ``python benchmarks/workers.py [--seconds 5] [--rounds 3]``
(needs wrk: ``apt-get install -y wrk``). Not a test; never run in CI.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_CORES = {"1 worker": "0", "2 workers shared": "0,1", "2 workers reuseport": "0,1"}
WRK_CORE = "1"
CONNECTIONS = 64
MODES = {"keep-alive": [], "close": ["-s", str(REPO / "benchmarks" / "close.lua")]}


@dataclass
class Result:
    rps: list[float] = field(default_factory=list)
    shares: list[list[float]] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        page = response.read().decode()
    found = re.findall(r'cyclehttp_worker_requests_total\{worker="(\d+)"\} (\S+)', page)
    counts = {worker: float(value) for worker, value in found}
    if not counts:  # a single process: no worker families
        total = re.findall(r"cyclehttp_requests_total\{[^}]*\} (\S+)", page)
        counts = {"0": sum(float(v) for v in total)}
    return counts


def cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its children, from /proc."""
    ticks = 0
    pids = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                pids.append(int(entry))
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def start(name: str, port: int) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", SERVER_CORES[name], sys.executable, "-m", "cyclehttp",
               "examples.hello:routes", "--port", str(port), "--metrics-path", "/metrics",
               "--log-level", "warning"]  # fmt: skip
    if name != "1 worker":
        command += ["--workers", "2", "--balance", name.split()[-1]]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            counts = worker_counts(port)
            if name == "1 worker" or len(counts) == 2:
                return process
        except OSError:
            pass
        time.sleep(0.1)
    stop(process)
    raise SystemExit(f"{name}: the server did not come up on port {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run(name: str, mode: str, seconds: int, result: Result) -> None:
    port = free_port()
    process = start(name, port)
    try:
        before = worker_counts(port)
        cpu_before = cpu_seconds(process.pid)
        out = subprocess.run(
            ["taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", *MODES[mode],
             f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        cpu = cpu_seconds(process.pid) - cpu_before
        time.sleep(1.3)  # the other worker publishes its figures once a second
        after = worker_counts(port)
    finally:
        stop(process)
    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    served = re.search(r"(\d+) requests in", out)
    deltas = sorted((after[k] - before.get(k, 0.0) for k in after), reverse=True)
    total = sum(deltas) or 1.0
    result.rps.append(rps)
    result.shares.append([d / total for d in deltas])
    if served:
        result.cpu_us.append(cpu / int(served.group(1)) * 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("wrk and taskset are needed: apt-get install -y wrk util-linux", file=sys.stderr)
        return 2
    results = {(name, mode): Result() for mode in MODES for name in SERVER_CORES}
    for round_ in range(args.rounds):
        for mode in MODES:
            for name in SERVER_CORES:
                run(name, mode, args.seconds, results[name, mode])
                last = results[name, mode]
                print(f"round {round_ + 1}: {mode:10} {name:20} {last.rps[-1]:>10,.0f} req/s  "
                      f"shares {' / '.join(f'{s:.0%}' for s in last.shares[-1])}", flush=True)  # fmt: skip
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    print()
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {wrk_version.strip()}")  # fmt: skip
    print(f"server: taskset -c 0 (1 worker) or 0,1 (2 workers); wrk -t1 -c{CONNECTIONS} -d{args.seconds}s "
          f"on core {WRK_CORE}; {args.rounds} interleaved rounds, median shown")  # fmt: skip
    print()
    print("| mode | server | req/s (median) | server CPU µs/req | busiest worker's share (each round) |")
    print("|---|---|---:|---:|---|")
    for (name, mode), result in results.items():
        shares = ", ".join(f"{s[0]:.0%}" for s in result.shares) if name != "1 worker" else "-"
        cpu = f"{statistics.median(result.cpu_us):.1f}" if result.cpu_us else "?"
        print(f"| {mode} | {name} | {statistics.median(result.rps):,.0f} | {cpu} | {shares} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

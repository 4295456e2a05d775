"""What request timing costs: examples/hello.py with timing on and off, side by side.

Usage: python benchmarks/timing_overhead.py [--rounds 5] [--duration 5] [--together]
                                           [--src SRC_DIR] [--against SRC_DIR ...]
                                           [--scenario NAME ...]

Scenarios: keep-alive GET /, Connection: close GET /, keep-alive GET /users/1
(a handler). Each round runs every variant once per scenario:

* by default in turn: the server pinned to core 0, wrk -t1 -c64 pinned to
  core 1, one variant after the other;
* with ``--together`` at the same moment: all variants pinned to core 0, each
  loaded by its own wrk -t1 -c32 on core 1. They share the machine's state
  exactly and only their cost per request differs, which makes this the
  precise mode on a noisy machine.

Reported: the median req/s and the median server CPU per request (user +
system time of the server process / requests), and the median over rounds of
each variant's ratio to the first one in the same round.

``--src SRC_DIR`` serves the on/off variants from a copy of ``src/`` (so the
tree can be edited while it runs); each ``--against SRC_DIR`` adds a variant
served from another source tree (e.g. a ``git worktree`` of an older commit).
``--scenario NAME`` runs only the scenarios named.
Needs wrk (apt-get install -y wrk) and taskset.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "GET / keep-alive": ["http://127.0.0.1:{port}/"],
    "GET / close": ["-s", str(ROOT / "benchmarks/close.lua"), "http://127.0.0.1:{port}/"],
    "GET /users/1 keep-alive": ["http://127.0.0.1:{port}/users/1"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time of a process: the scheduler's ns count per thread where the kernel shows it.

    ``/proc/PID/stat`` counts in clock ticks (10 ms): over a run of a few seconds
    that alone is a percent of error, as large as the differences measured here.
    """
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "sched").read_text().splitlines():
                if line.startswith("se.sum_exec_runtime"):
                    total += float(line.split(":")[1]) / 1e3  # milliseconds
                    break
            else:
                raise OSError("no se.sum_exec_runtime")
        return total
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(flags: list[str], pythonpath: str | None, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = ["taskset", "-c", "0", sys.executable, "-m", "cyclehttp", "examples.hello:routes"]
    command += ["--port", str(port), "--log-level", "warning", *flags]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start")


def run_wrk(args: list[str], port: int, duration: int, pid: int) -> tuple[float, float]:
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{duration}s", *(a.format(port=port) for a in args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    used = cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, used / requests * 1e6


def run_pair(args: list[str], ports: list[int], duration: int, pids: list[int]) -> list[tuple[float, float]]:
    """Load every server at once (one wrk each, all on core 1): they share core 0 and the same moment."""
    before = [cpu_seconds(pid) for pid in pids]
    loads = [
        subprocess.Popen(
            ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{duration}s"]
            + [a.format(port=port) for a in args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    outs = [load.communicate(timeout=duration + 30)[0] for load in loads]
    used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
    results = []
    for out, cpu in zip(outs, used, strict=True):
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        results.append((rate, cpu / requests * 1e6))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--src", help="serve the on/off variants from this copy of src/")
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        help="another source tree to compare (its src/ directory); repeat for several",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario; repeat for several (default: all)",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="run all variants at the same time on core 0 (two wrk on core 1) instead of in turn",
    )
    args = parser.parse_args()
    variants: dict[str, tuple[list[str], str | None]] = {
        "timing on (default)": ([], args.src),
        "timing off (--no-timing)": (["--no-timing"], args.src),
    }
    for tree in args.against:
        variants[f"PYTHONPATH={tree}"] = ([], tree)
    scenarios = {name: SCENARIOS[name] for name in args.scenario or SCENARIOS}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_number in range(args.rounds):
        if args.together:
            ports = [free_port() for _ in variants]
            servers = [
                start_server(flags, pythonpath, port)
                for (flags, pythonpath), port in zip(variants.values(), ports, strict=True)
            ]
            try:
                for scenario, wrk_args in scenarios.items():
                    pair = run_pair(wrk_args, ports, args.duration, [server.pid for server in servers])
                    for name, figures in zip(variants, pair, strict=True):
                        results.setdefault((name, scenario), []).append(figures)
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(timeout=15)
        else:
            for name, (flags, pythonpath) in variants.items():
                port = free_port()
                server = start_server(flags, pythonpath, port)
                try:
                    for scenario, wrk_args in scenarios.items():
                        results.setdefault((name, scenario), []).append(
                            run_wrk(wrk_args, port, args.duration, server.pid)
                        )
                finally:
                    server.terminate()
                    server.wait(timeout=15)
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    first = next(iter(variants))
    how = "simultaneous (wrk -t1 -c32 per server)" if args.together else "interleaved (wrk -t1 -c64)"
    print(f"{args.rounds} {how} rounds of {args.duration}s; medians, and the median of")
    print(f"each round's ratio to '{first}' (min..max over rounds)")
    for scenario in scenarios:
        print(f"\n{scenario}")
        base = results[(first, scenario)]
        for name in variants:
            runs = results[(name, scenario)]
            rate_ratios = [r / b for (r, _), (b, _) in zip(runs, base, strict=True)]
            cpu_ratios = [c / b for (_, c), (_, b) in zip(runs, base, strict=True)]
            print(
                f"  {name:28s} {statistics.median(r for r, _ in runs):9.0f} req/s "
                f"({statistics.median(rate_ratios):5.3f}x, "
                f"{min(rate_ratios):5.3f}..{max(rate_ratios):5.3f})  "
                f"{statistics.median(c for _, c in runs):6.2f} us/req "
                f"({statistics.median(cpu_ratios):5.3f}x, {min(cpu_ratios):5.3f}..{max(cpu_ratios):5.3f})"
            )


if __name__ == "__main__":
    main()

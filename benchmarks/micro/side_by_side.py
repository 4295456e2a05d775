"""In-process cost of ``data_received`` for several source trees, side by side.

    python benchmarks/micro/side_by_side.py --src src --src /tmp/before/src [--rounds 7]

Each round starts one fresh interpreter per tree (pinned to core 0), which
serves ``examples/hello.py`` over a fake transport that writes nowhere and
times ``protocol.data_received(request)`` for each case with ``timeit``; the
rounds alternate the trees, so a machine that slows down slows all of them.
It prints the median nanoseconds per request of each case and tree, and each
tree's ratio to the first. No sockets, no kernel: only the Python the cycle runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "GET / keep-alive": ("GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n", 1),
    "GET / pipelined x16": ("GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n" * 16, 16),
    "GET /users/1": ("GET /users/1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n", 1),
    "POST /echo 1 KiB": (
        "POST /echo HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: 1024\r\n\r\n" + "x" * 1024,
        1,
    ),
}

# Run in the child: imports whichever cyclehttp is first on sys.path.
CHILD = r"""
import asyncio, json, sys, timeit
import uvloop
try:  # the layered package
    from cyclehttp.app.application import App
    from cyclehttp.clock.stats import Stats
    from cyclehttp.config import Config
    from cyclehttp.cycle.connection import HttpProtocol
    from cyclehttp.cycle.server_state import ServerState
except ImportError:  # a tree from before the layers
    from cyclehttp.app import App
    from cyclehttp.config import Config
    from cyclehttp.metrics import Stats
    from cyclehttp.protocol import HttpProtocol
    from cyclehttp.server import ServerState
from examples.hello import routes


class NullTransport:
    # Not cyclehttp.testing.fake_transport: this must run against trees that predate it.
    def write(self, data): pass
    def writelines(self, data): pass
    def get_extra_info(self, name, default=None): return ("127.0.0.1", 1) if name == "peername" else default
    def pause_reading(self): pass
    def resume_reading(self): pass
    def is_closing(self): return False
    def close(self): pass


cases = json.loads(sys.argv[1])
loop = uvloop.new_event_loop()
router = App(routes).compile()
stats = Stats()
stats.attach(router)
protocol = HttpProtocol(ServerState(router, Config(), stats, loop))
protocol.connection_made(NullTransport())
results = {}
for name, (text, count) in cases.items():
    data = text.encode("latin-1")
    feed = protocol.data_received
    timer = timeit.Timer(lambda: feed(data))
    number, _ = timer.autorange()
    best = min(timer.repeat(5, number))
    results[name] = best / number / count * 1e9
print(json.dumps(results))
"""


def run_tree(src: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}
    command = [sys.executable, "-c", CHILD, json.dumps(CASES)]
    if os.path.exists("/usr/bin/taskset"):
        command = ["taskset", "-c", "0", *command]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="a source tree (its src/); repeat")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    trees = [Path(src).resolve() for src in args.src]
    figures: dict[Path, dict[str, list[float]]] = {tree: {name: [] for name in CASES} for tree in trees}
    for round_number in range(args.rounds):
        order = trees if round_number % 2 == 0 else list(reversed(trees))
        for tree in order:
            for name, value in run_tree(tree).items():
                figures[tree][name].append(value)
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    print(f"ns per request, median of {args.rounds} rounds (ratio to the first tree)")
    for name in CASES:
        print(name)
        base = statistics.median(figures[trees[0]][name])
        for tree in trees:
            value = statistics.median(figures[tree][name])
            print(f"  {tree!s:40} {value:8.0f} ns  {value / base:.3f}x")


if __name__ == "__main__":
    main()

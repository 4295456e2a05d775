"""The router's cost against the number of parameter routes: the last one declared, and a 404.

    python benchmarks/micro/router.py [--src SRC ...] [--sizes 1,10,100,1000]

For each table size N the app declares N parameter routes of a REST shape,
``/api/v1/resource{i}/{id:int}``, and times ``router.lookup(b"GET", path)`` in
process with ``timeit`` (best of 5) for the last route declared
(``/api/v1/resource{N-1}/42``) and for a path no route has (a 404). Each
``--src`` tree runs in its own interpreter (a pure tree, or one compiled in
place), so builds compare side by side. The target: in a 1,000-route table,
both lookups within 1.5x of the same lookups in a 1-route table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, timeit
try:
    from cyclehttp.app.application import App
except ImportError:  # a tree from before the layers
    from cyclehttp.app import App
sizes = json.loads(sys.argv[1])
results = {}
for size in sizes:
    app = App([("GET", "/api/v1/resource%d/{id:int}" % i, lambda request: "x") for i in range(size)])
    router = app.compile()
    lookup = router.lookup
    last = ("/api/v1/resource%d/42" % (size - 1)).encode()
    for name, path in (("last route", last), ("404", b"/api/v2/nothing/here")):
        timer = timeit.Timer(lambda: lookup(b"GET", path))
        number, _ = timer.autorange()
        results["%s %d" % (name, size)] = min(timer.repeat(5, number)) / number * 1e9
print(json.dumps(results))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", help="a source tree (its src/); repeat (default: src)")
    parser.add_argument("--sizes", default="1,10,100,1000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    trees = [Path(src).resolve() for src in (args.src or ["src"])]
    for tree in trees:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, "-c", CHILD, json.dumps(sizes)]
        if os.path.exists("/usr/bin/taskset"):
            command = ["taskset", "-c", "0", *command]
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=True)
        figures = json.loads(out.stdout)
        print(f"{tree}: ns per lookup (best of 5)")
        print(f"  {'routes':>7} {'last route':>11} {'404':>9}")
        for size in sizes:
            print(f"  {size:>7} {figures[f'last route {size}']:>11.0f} {figures[f'404 {size}']:>9.0f}")
        base_last, base_missing = figures[f"last route {sizes[0]}"], figures[f"404 {sizes[0]}"]
        top = sizes[-1]
        print(
            f"  {top} routes / {sizes[0]}: last route {figures[f'last route {top}'] / base_last:.2f}x, "
            f"404 {figures[f'404 {top}'] / base_missing:.2f}x"
        )


if __name__ == "__main__":
    main()

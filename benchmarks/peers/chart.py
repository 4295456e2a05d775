"""Draw the medians of a benchmarks/peers.py run as one PNG: req/s per mode and server.

Usage: benchmarks/.venv-peers/bin/python benchmarks/peers/chart.py RESULTS.json OUT.png

RESULTS.json is what ``peers.py --json`` writes (``peers.py --chart`` runs this for
you). One panel per mode, a horizontal bar per server with its median req/s written
at the bar's end, cyclehttp in its own colour; a server without figures in a mode
(nginx has no json or echo, or a run failed) is left out of that panel. Each panel
has its own scale: compare servers within a panel, not across panels. Sized for a
GitHub README (about 1300 px wide). Needs matplotlib: the peers' venv has it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

OURS = "cyclehttp"
OURS_COLOUR = "#e8590c"
PEER_COLOUR = "#868e96"
WIDTH_IN = 12.0
PANEL_HEIGHT_IN = 2.7
DPI = 110


def bars(report: dict[str, Any], mode: str) -> list[tuple[str, float]]:
    """(server, median req/s) in the run's server order, for the servers with figures in mode."""
    found = []
    for server in report["config"]["servers"]:
        cell = report["medians"].get(server, {}).get(mode)
        if cell and "failed" not in cell and cell.get("rps") is not None:
            found.append((server, float(cell["rps"])))
    return found


def draw_panel(ax: Axes, title: str, values: list[tuple[str, float]]) -> None:
    """One mode: a bar per server, top to bottom in run order, labelled with its req/s."""
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    if not values:
        ax.text(0.5, 0.5, "no figures", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    names = [name for name, _ in values]
    rps = [value for _, value in values]
    colours = [OURS_COLOUR if name == OURS else PEER_COLOUR for name in names]
    ax.barh(range(len(values)), rps, color=colours, height=0.7)
    ax.set_yticks(range(len(values)), names, fontsize=10)
    for tick, name in zip(ax.get_yticklabels(), names, strict=True):
        if name == OURS:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlim(0, max(rps) * 1.22)
    for row, value in enumerate(rps):
        ax.text(value, row, f" {value:,.0f}", va="center", ha="left", fontsize=9)
    ax.xaxis.set_major_formatter(lambda x, _pos: f"{x / 1000:,.0f}k")
    ax.tick_params(axis="x", labelsize=8, colors="#555555")
    ax.grid(axis="x", color="#e9ecef")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def draw_notes(ax: Axes, report: dict[str, Any]) -> None:
    """The spare panel: what was measured with which versions."""
    env, config = report["environment"], report["config"]
    versions = {**env.get("project_env", {}), **env.get("peers_venv", {})}
    shown = [f"{name} {versions[name]}" for name in config["servers"] if name in versions]
    lines = [
        f"load: {config['wrk']}",
        f"servers on core {config['server_core']}, loaded one at a time",
        f"medians of {config['rounds']} interleaved rounds of {config['duration_s']}s",
        f"Python {env.get('python', '?')}, {env.get('nginx', '?').replace('nginx version: ', '')}",
        ", ".join(shown),
        "bars: median req/s, higher is better;",
        "each panel has its own scale",
    ]
    ax.set_axis_off()
    ax.text(0.02, 0.95, "\n".join(lines), va="top", ha="left", fontsize=9, color="#444444", linespacing=1.6)


def chart(report: dict[str, Any], out: Path) -> None:
    modes: dict[str, str] = report["config"]["modes"]
    columns = 2 if len(modes) > 1 else 1
    rows = math.ceil(len(modes) / columns)
    figure = Figure(figsize=(WIDTH_IN, 1.0 + PANEL_HEIGHT_IN * rows), dpi=DPI)
    FigureCanvasAgg(figure)  # the Agg canvas: PNG without a display or pyplot's global state
    cells = list(figure.subplots(rows, columns, squeeze=False).flat)
    for ax, (mode, title) in zip(cells, modes.items(), strict=False):
        short = re.sub(r" \(.*\)$", "", title)  # the pipelined title's note on latency is not charted
        draw_panel(ax, f"{mode}: {short}", bars(report, mode))
    for ax in cells[len(modes) :]:
        draw_notes(ax, report)
    env = report["environment"]
    machine = f"{env.get('machine', '?')} {env.get('cpu_model', '?')}, {env.get('cpus', '?')} CPUs"
    figure.suptitle(
        f"cyclehttp and its peers: req/s, {env.get('date', '?')[:10]}, {machine}",
        x=0.01,
        ha="left",
        fontsize=13,
        fontweight="bold",
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97), h_pad=1.5, w_pad=2.5)
    figure.savefig(out, dpi=DPI)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2])
    results, out = Path(sys.argv[1]), Path(sys.argv[2])
    chart(json.loads(results.read_text()), out)


if __name__ == "__main__":
    main()

"""The listening line: the one line a server logs when it starts listening, saying where,
how many processes and what is switched on (not to be confused with the startup hooks).

``cyclehttp 0.1.0 listening on http://127.0.0.1:8000 (1 process; uvloop 0.23.0,
httptools 0.9.0, brotli: yes; timing on, access log off)``. A single process
logs it from ``Server.serve``; with ``--workers N`` the supervisor logs it once.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from cyclehttp.config import Config
from cyclehttp.cycle.prerendered import BROTLI
from cyclehttp.serving.listeners import describe
from cyclehttp.version import BUILD, __version__

__all__ = ["listening_line", "module_version", "speedups"]


def module_version(name: str) -> str:
    """The installed version of ``name`` ("?" when it cannot be found)."""
    try:
        found = getattr(import_module(name), "__version__", None)
    except ImportError:
        return "?"
    if isinstance(found, str):
        return found
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def speedups() -> str:
    """``uvloop 0.23.0, httptools 0.9.0, brotli: yes``: the native parts in use."""
    brotli = "yes" if BROTLI else "no"
    return f"uvloop {module_version('uvloop')}, httptools {module_version('httptools')}, brotli: {brotli}"


def listening_line(
    socks: Sequence[socket.socket], config: Config, *, workers: int = 1, balance: str | None = None
) -> str:
    """The listening line for a server on ``socks``; ``balance`` describes how ``workers`` > 1 share them."""
    where = ", ".join(describe(sock) for sock in socks) or "(no socket)"
    processes = "1 process" if workers == 1 else f"{workers} workers"
    if workers > 1 and balance:
        processes += f", {balance}"
    switches = f"timing {'on' if config.timing else 'off'}, access log {'on' if config.access_log else 'off'}"
    if config.metrics_path:
        switches += f", metrics on {config.metrics_path}"
    return f"cyclehttp {__version__} ({BUILD}) listening on {where} ({processes}; {speedups()}; {switches})"

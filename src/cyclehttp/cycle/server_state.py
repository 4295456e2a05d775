"""``ServerState``: what every connection of one server shares, given to each when it is made."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from cyclehttp.clock.accesslog import AccessLog
from cyclehttp.config import Config

if TYPE_CHECKING:
    from cyclehttp.clock.stats import Stats
    from cyclehttp.cycle.router import Router
    from cyclehttp.types import ServedApp

__all__ = ["ServerState"]


class ServerState:
    """What every connection of one server shares."""

    __slots__ = ("access_log", "app", "config", "connections", "draining", "loop", "router", "stats")

    def __init__(
        self,
        router: Router,
        config: Config,
        stats: Stats,
        loop: asyncio.AbstractEventLoop,
        app: ServedApp | None = None,
    ) -> None:
        self.app = app
        """The app served (``request.app``); None only for protocol tests that build a state by hand."""
        self.router = router
        self.config = config
        self.stats = stats
        self.loop = loop
        self.access_log = AccessLog() if config.access_log else None
        self.connections: set[Any] = set()
        """The open connections (``HttpProtocol``), for the tick's timeouts and for shutdown."""
        self.draining = False

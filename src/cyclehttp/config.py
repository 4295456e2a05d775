"""Server settings, validated once when the server is built."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

__all__ = ["DEFAULT_GRACEFUL_TIMEOUT", "DEFAULT_MAX_PIPELINED_REQUESTS", "Config"]

# aiohttp bounds its pipelined-request queue at 32 and resumes at half
# (PR #12830, after years of issue #1368); the same numbers serve here.
DEFAULT_MAX_PIPELINED_REQUESTS: Final = 32

# uvicorn's --timeout-graceful-shutdown answers uvicorn #251 (Ctrl-C hanging on a
# long request); sanic's GRACEFUL_SHUTDOWN_TIMEOUT is 15 s. 10 s fits inside the
# 30 s that Kubernetes and systemd give a process between SIGTERM and SIGKILL.
DEFAULT_GRACEFUL_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    """Limits and timeouts of one server.

    ``max_pipelined_requests``: requests parsed ahead on one connection while
    an earlier one is handled; beyond it the server stops reading from that
    client until half of them are answered.
    ``graceful_timeout``: seconds a shutdown waits for requests in flight
    before closing their connections.
    """

    max_pipelined_requests: int = DEFAULT_MAX_PIPELINED_REQUESTS
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT

    def __post_init__(self) -> None:
        if not isinstance(self.max_pipelined_requests, int) or self.max_pipelined_requests < 1:
            raise ValueError(
                f"max_pipelined_requests must be an int >= 1, got {self.max_pipelined_requests!r}"
            )
        if not isinstance(self.graceful_timeout, (int, float)) or self.graceful_timeout < 0:
            raise ValueError(f"graceful_timeout must be seconds >= 0, got {self.graceful_timeout!r}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Config:
        """A Config from keyword options, with a clear error for an unknown name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown server option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**options)

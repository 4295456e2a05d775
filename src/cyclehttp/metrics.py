"""The figures the server keeps about its own cycles.

``connection_made`` and ``connection_lost`` read ``time.monotonic_ns()``;
the difference goes into a fixed-size histogram, so memory does not grow with
traffic. ``Stats.snapshot()`` gives a typed, immutable copy for readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .histogram import HistogramSnapshot, LogHistogram

__all__ = ["Stats", "StatsSnapshot"]


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A point-in-time copy of the server's counters and connection timings."""

    connections_accepted: int
    connections_open: int
    connections_closed: int
    requests: int
    connection_lifetime: HistogramSnapshot


class Stats:
    """Live counters, updated by the protocol on the event loop thread."""

    __slots__ = ("connection_lifetime", "connections_accepted", "connections_closed", "requests")

    def __init__(self) -> None:
        self.connections_accepted = 0
        self.connections_closed = 0
        self.requests = 0
        self.connection_lifetime = LogHistogram()

    def connection_closed(self, lifetime_ns: int) -> None:
        self.connections_closed += 1
        self.connection_lifetime.record(lifetime_ns)

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            connections_accepted=self.connections_accepted,
            connections_open=self.connections_accepted - self.connections_closed,
            connections_closed=self.connections_closed,
            requests=self.requests,
            connection_lifetime=self.connection_lifetime.snapshot(),
        )

    def reset(self) -> None:
        """Zero every counter and histogram (connections still open stay counted as open)."""
        open_now = self.connections_accepted - self.connections_closed
        self.connections_accepted = open_now
        self.connections_closed = 0
        self.requests = 0
        self.connection_lifetime.reset()

"""``cyclehttp.metrics``: the path the docs name for the stats types (``cyclehttp.clock.stats``)."""

from cyclehttp.clock.stats import RouteCount, Stats, StatsSnapshot, WorkerFigures, format_duration

__all__ = ["RouteCount", "Stats", "StatsSnapshot", "WorkerFigures", "format_duration"]

"""``cyclehttp.metrics``: the path the docs name for the stats types (``cyclehttp.clock.stats``)."""

from cyclehttp.clock.stats import RouteCount, Stats, StatsSnapshot, WorkerStats, format_duration

WorkerFigures = WorkerStats  # its old name, kept so code importing it from here keeps working

__all__ = ["RouteCount", "Stats", "StatsSnapshot", "WorkerStats", "format_duration"]

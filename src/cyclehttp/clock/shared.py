"""Metrics across worker processes: one fixed-size shared-memory slot per worker.

With ``--workers N`` every worker keeps its own :class:`~cyclehttp.metrics.Stats`
on its own event loop, and a request for the metrics page lands on one of them.
For that page (and ``cyclehttp stats``) to describe the whole server, the
supervisor maps one anonymous shared region *before* forking
(``mmap.mmap(-1, size)`` is ``MAP_SHARED | MAP_ANONYMOUS`` on Linux, so every
child sees the same pages). Each worker writes a compact JSON snapshot of its
figures into its own slot once a second (the server's tick) and when it stops;
the worker answering the metrics page merges its live figures with the other
slots. Other workers' figures are therefore at most about a second old.

Theory of operation of a slot (one writer, any number of readers)::

    [seq: u64][len0: u32][crc0: u32][len1: u32][crc1: u32][pad]  [buffer 0][buffer 1]

* ``seq`` counts publications; the newest snapshot is in buffer ``seq & 1``
  and ``seq == 0`` means "never published".
* The writer fills the *other* buffer (``(seq + 1) & 1``), writes its length
  and CRC-32, and only then bumps ``seq``. A reader therefore never reads a
  buffer while it is written unless two publications happen during one read
  (then ``seq`` changed and the reader retries), and a worker killed in the
  middle of a write leaves the previous snapshot intact.
* The CRC catches whatever the ``seq`` check cannot (a CPU that reorders
  stores, a writer that died between length and data): a snapshot that does
  not check out is retried a few times, then the reader keeps the last good
  copy it read from that slot.

Restarts never make a counter go backwards: a worker started in slot ``i``
reads the slot's last snapshot (its predecessor's, itself cumulative) as its
*base* and publishes ``base + its own figures``. Counters of dead workers are
thus kept; only what a worker served after its last publication (at most
~1 s of traffic, and only when it dies without a graceful stop, e.g. SIGKILL)
is lost. The base's open connections count as closed: they died with it.

Memory is fixed: ``2 * BUFFER_SIZE`` bytes per worker, whatever the traffic.
Histograms are bounded (353 buckets each); route counts are not, so a
snapshot that does not fit keeps the busiest routes and folds the rest into
``<any> <truncated>`` entries per status class: totals stay exact, and the
process never fails over it.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Final

from cyclehttp.clock.histogram import HistogramSnapshot, LogHistogram, bucket_index
from cyclehttp.clock.stats import STATUS_CLASSES, RouteCount, StatsSnapshot, WorkerStats

__all__ = [
    "BUFFER_SIZE",
    "TRUNCATED",
    "SharedStats",
    "WorkerSlot",
    "decode_snapshot",
    "encode_snapshot",
    "merge_snapshots",
]

logger = logging.getLogger("cyclehttp.workers")

BUFFER_SIZE: Final = 64 * 1024
"""Bytes for one serialized snapshot; a worker slot holds two (double buffering).

The three histograms take at most ~25 kB as JSON; the rest is for route counts.
"""

TRUNCATED: Final = "<truncated>"
"""Route label of the counts folded together when a snapshot would not fit its slot."""

_HEADER: Final = struct.Struct("<QIIII")
_HEADER_SIZE: Final = 64  # the header padded to a cache line
_SEQ: Final = struct.Struct("<Q")
_LENGTH_CRC: Final = struct.Struct("<II")
_READ_ATTEMPTS: Final = 5


# --- (de)serialization ----------------------------------------------------------


def _encode_histogram(histogram: HistogramSnapshot) -> dict[str, Any]:
    return {"b": [[bucket_index(bound), count] for bound, count in histogram.buckets]}


def _histogram(buckets: Iterable[tuple[int, int]]) -> HistogramSnapshot:
    """A snapshot from bucket counts ``(any value inside the bucket, count)``: the rest follows."""
    histogram = LogHistogram()
    for value, count in buckets:
        histogram.record_many(value, count)
    return histogram.snapshot()


_UPPER_BOUNDS: Final = tuple(LogHistogram.bucket_upper_bounds())


def _decode_histogram(data: dict[str, Any]) -> HistogramSnapshot:
    buckets = [(_UPPER_BOUNDS[int(i)], int(c)) for i, c in data["b"] if 0 <= int(i) < len(_UPPER_BOUNDS)]
    return _histogram(buckets)


def _as_dict(snapshot: StatsSnapshot, routes: Sequence[RouteCount], **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "t0": snapshot.started_at,
        "ca": snapshot.connections_accepted,
        "cc": snapshot.connections_closed,
        "co": snapshot.connections_open,
        "r": [[r.method, r.route, r.status, r.count] for r in routes],
        "br": snapshot.bytes_received,
        "bs": snapshot.bytes_sent,
        "pe": snapshot.parse_errors,
        "lh": dict(snapshot.limit_hits),
        "to": dict(snapshot.timeouts),
        "he": snapshot.handler_exceptions,
        "ie": snapshot.internal_errors,
        "hc": _encode_histogram(snapshot.connection_lifetime),
        "hr": _encode_histogram(snapshot.request_latency),
        "hh": _encode_histogram(snapshot.handler_time),
    }


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _fold(routes: Sequence[RouteCount]) -> list[RouteCount]:
    by_status: dict[str, int] = {}
    for route in routes:
        by_status[route.status] = by_status.get(route.status, 0) + route.count
    return [RouteCount("<any>", TRUNCATED, status, count) for status, count in by_status.items()]


def encode_snapshot(snapshot: StatsSnapshot, limit: int = BUFFER_SIZE, **extra: Any) -> bytes | None:
    """``snapshot`` (plus ``extra`` JSON-able fields) as compact JSON of at most ``limit`` bytes.

    When the route counts make it too big, the least busy routes are folded
    into ``<any> <truncated>`` counts per status class (totals stay exact).
    Returns ``None`` only if even that does not fit (a ``limit`` far below
    ``BUFFER_SIZE``).
    """
    routes = list(snapshot.requests_by_route)
    data = _dump(_as_dict(snapshot, routes, **extra))
    if len(data) <= limit:
        return data
    busiest = sorted((r for r in routes if r.route != TRUNCATED), key=lambda r: r.count, reverse=True)
    already = [r for r in routes if r.route == TRUNCATED]
    keep = len(busiest)
    while keep > 0:
        keep //= 2
        kept = busiest[:keep] + _fold(already + busiest[keep:])
        data = _dump(_as_dict(snapshot, kept, **extra))
        if len(data) <= limit:
            return data
    return None


def decode_snapshot(data: bytes) -> tuple[StatsSnapshot, dict[str, Any]]:
    """The snapshot in ``data`` and the whole decoded JSON object (for the extra fields).

    Raises ``ValueError`` (or ``KeyError``/``TypeError``) on data that is not a snapshot.
    """
    raw = json.loads(data)
    routes = tuple(RouteCount(str(m), str(r), str(s), int(c)) for m, r, s, c in raw["r"])
    by_status = dict.fromkeys(STATUS_CLASSES, 0)
    for route in routes:
        if route.status in by_status:
            by_status[route.status] += route.count
    started_at = float(raw["t0"])
    snapshot = StatsSnapshot(
        started_at=started_at,
        uptime_seconds=max(0.0, time.time() - started_at),
        connections_accepted=int(raw["ca"]),
        connections_open=int(raw["co"]),
        connections_closed=int(raw["cc"]),
        requests=sum(by_status.values()),
        requests_by_status=MappingProxyType(by_status),
        requests_by_route=routes,
        bytes_received=int(raw["br"]),
        bytes_sent=int(raw["bs"]),
        parse_errors=int(raw["pe"]),
        limit_hits=MappingProxyType({str(k): int(v) for k, v in raw["lh"].items()}),
        timeouts=MappingProxyType({str(k): int(v) for k, v in raw["to"].items()}),
        handler_exceptions=int(raw["he"]),
        internal_errors=int(raw["ie"]),
        connection_lifetime=_decode_histogram(raw["hc"]),
        request_latency=_decode_histogram(raw["hr"]),
        handler_time=_decode_histogram(raw["hh"]),
    )
    return snapshot, raw


def _add_counts(target: dict[str, int], counts: Iterable[tuple[str, int]]) -> None:
    for key, count in counts:
        target[key] = target.get(key, 0) + count


def _merge_histograms(histograms: Sequence[HistogramSnapshot]) -> HistogramSnapshot:
    """The buckets say everything a snapshot holds: merging is adding them up."""
    return _histogram(bucket for histogram in histograms for bucket in histogram.buckets)


def merge_snapshots(snapshots: Sequence[StatsSnapshot]) -> StatsSnapshot:
    """One snapshot for several processes: counters and gauges summed, histograms merged
    bucket by bucket, route counts summed by (method, route, status) in first-seen order.

    The start time is the earliest; the uptime is counted from it.
    """
    if not snapshots:
        raise ValueError("merge_snapshots needs at least one snapshot")
    if len(snapshots) == 1:
        return snapshots[0]
    routes: dict[tuple[str, str, str], int] = {}
    limit_hits: dict[str, int] = {}
    timeouts: dict[str, int] = {}
    by_status = dict.fromkeys(STATUS_CLASSES, 0)
    for s in snapshots:
        for r in s.requests_by_route:
            key = (r.method, r.route, r.status)
            routes[key] = routes.get(key, 0) + r.count
        _add_counts(limit_hits, s.limit_hits.items())
        _add_counts(timeouts, s.timeouts.items())
        _add_counts(by_status, s.requests_by_status.items())
    started_at = min(s.started_at for s in snapshots)
    as_of = max(s.started_at + s.uptime_seconds for s in snapshots)
    return StatsSnapshot(
        started_at=started_at,
        uptime_seconds=max(0.0, as_of - started_at),
        connections_accepted=sum(s.connections_accepted for s in snapshots),
        connections_open=sum(s.connections_open for s in snapshots),
        connections_closed=sum(s.connections_closed for s in snapshots),
        requests=sum(s.requests for s in snapshots),
        requests_by_status=MappingProxyType(by_status),
        requests_by_route=tuple(RouteCount(m, r, st, c) for (m, r, st), c in routes.items()),
        bytes_received=sum(s.bytes_received for s in snapshots),
        bytes_sent=sum(s.bytes_sent for s in snapshots),
        parse_errors=sum(s.parse_errors for s in snapshots),
        limit_hits=MappingProxyType(limit_hits),
        timeouts=MappingProxyType(timeouts),
        handler_exceptions=sum(s.handler_exceptions for s in snapshots),
        internal_errors=sum(s.internal_errors for s in snapshots),
        connection_lifetime=_merge_histograms([s.connection_lifetime for s in snapshots]),
        request_latency=_merge_histograms([s.request_latency for s in snapshots]),
        handler_time=_merge_histograms([s.handler_time for s in snapshots]),
    )


# --- the shared region ----------------------------------------------------------


class SharedStats:
    """``workers`` slots in one anonymous shared mapping; create it before forking the workers.

    Each slot has one writer (the worker holding that index) and any number of
    readers. ``write`` and ``read`` move raw bytes; :class:`WorkerSlot` is the
    worker's view that speaks snapshots.
    """

    def __init__(self, workers: int, buffer_size: int = BUFFER_SIZE) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.buffer_size = buffer_size
        self.slot_size = _HEADER_SIZE + 2 * buffer_size
        self._map = mmap.mmap(-1, workers * self.slot_size)

    def _check(self, index: int) -> int:
        if not 0 <= index < self.workers:
            raise IndexError(f"worker index {index} out of range 0..{self.workers - 1}")
        return index * self.slot_size

    def write(self, index: int, data: bytes) -> None:
        """Publish ``data`` in slot ``index`` (only the slot's own worker may call this)."""
        if len(data) > self.buffer_size:
            raise ValueError(f"{len(data)} bytes do not fit a {self.buffer_size}-byte buffer")
        base = self._check(index)
        (seq,) = _SEQ.unpack_from(self._map, base)
        buffer = (seq + 1) & 1
        start = base + _HEADER_SIZE + buffer * self.buffer_size
        self._map[start : start + len(data)] = data
        _LENGTH_CRC.pack_into(self._map, base + 8 + 8 * buffer, len(data), zlib.crc32(data))
        _SEQ.pack_into(self._map, base, seq + 1)

    def read(self, index: int) -> bytes | None:
        """The newest bytes published in slot ``index``; ``None`` if none (or none that checks out)."""
        base = self._check(index)
        for attempt in range(_READ_ATTEMPTS):
            seq, len0, crc0, len1, crc1 = _HEADER.unpack_from(self._map, base)
            if seq == 0:
                return None
            buffer = seq & 1
            length, crc = (len1, crc1) if buffer else (len0, crc0)
            if length <= self.buffer_size:
                start = base + _HEADER_SIZE + buffer * self.buffer_size
                data = self._map[start : start + length]
                (again,) = _SEQ.unpack_from(self._map, base)
                if zlib.crc32(data) == crc and (again == seq or attempt == _READ_ATTEMPTS - 1):
                    return data
            if attempt:
                time.sleep(0.0005)
        return None

    def merged(self) -> StatsSnapshot | None:
        """Every slot's last publication merged (the supervisor's exit summary); ``None`` if none."""
        snapshots: list[StatsSnapshot] = []
        for index in range(self.workers):
            data = self.read(index)
            if data is None:
                continue
            try:
                snapshots.append(decode_snapshot(data)[0])
            except (ValueError, KeyError, TypeError, IndexError):
                continue
        return merge_snapshots(snapshots) if snapshots else None

    def close(self) -> None:
        """Unmap the region (each process holds its own mapping; the last one to go frees it)."""
        self._map.close()


class WorkerSlot:
    """A worker's view of the shared region: publish its own figures, read everybody's.

    Created in the worker process after fork. The slot's previous content (the
    predecessor's last publication, itself cumulative) becomes this worker's
    *base*, so the slot's counters continue instead of starting over.
    """

    def __init__(self, shared: SharedStats, index: int, pid: int | None = None) -> None:
        self.shared = shared
        self.index = index
        self.pid = os.getpid() if pid is None else pid
        self.base: StatsSnapshot | None = None
        self.starts = 1
        self._last: dict[int, tuple[StatsSnapshot, dict[str, Any]]] = {}
        self._too_big_logged = False
        previous = self._read(index)
        if previous is not None:
            snapshot, raw = previous
            self.starts = int(raw.get("n", 0)) + 1
            # The predecessor's open connections died with it: count them as closed.
            self.base = replace(
                snapshot, connections_closed=snapshot.connections_accepted, connections_open=0
            )

    def _read(self, index: int) -> tuple[StatsSnapshot, dict[str, Any]] | None:
        data = self.shared.read(index)
        if data is not None:
            try:
                self._last[index] = decode_snapshot(data)
            except (ValueError, KeyError, TypeError, IndexError):
                logger.warning("worker slot %d holds data that is not a snapshot; ignoring it", index)
        return self._last.get(index)

    def own(self, live: StatsSnapshot) -> StatsSnapshot:
        """This slot's figures: the base (earlier processes of the slot) plus ``live``."""
        return live if self.base is None else merge_snapshots([self.base, live])

    def publish(self, live: StatsSnapshot) -> None:
        """Write ``base + live`` into this worker's slot (once a second, and at shutdown)."""
        data = encode_snapshot(
            self.own(live), self.shared.buffer_size, i=self.index, pid=self.pid, n=self.starts, at=time.time()
        )
        if data is None:
            if not self._too_big_logged:
                logger.error(
                    "worker %d: its figures do not fit a %d-byte slot even with route counts folded; "
                    "the metrics page keeps its last published figures",
                    self.index,
                    self.shared.buffer_size,
                )
                self._too_big_logged = True
            return
        self.shared.write(self.index, data)

    def whole(self, live: StatsSnapshot) -> tuple[StatsSnapshot, list[WorkerStats]]:
        """The whole server: this worker's live figures merged with every other slot's last snapshot.

        Also the per-worker figures, in slot order, for the metrics page's ``worker`` labels.
        """
        own = self.own(live)
        snapshots = [own]
        per_worker: list[WorkerStats] = []
        now = time.time()
        for index in range(self.shared.workers):
            if index == self.index:
                per_worker.append(
                    WorkerStats(index, self.pid, self.starts, own.requests, own.connections_open, 0.0)
                )
                continue
            found = self._read(index)
            if found is None:
                continue
            snapshot, raw = found
            snapshots.append(snapshot)
            per_worker.append(
                WorkerStats(
                    index,
                    int(raw.get("pid", 0)),
                    int(raw.get("n", 1)),
                    snapshot.requests,
                    snapshot.connections_open,
                    max(0.0, now - float(raw.get("at", now))),
                )
            )
        return merge_snapshots(snapshots), per_worker

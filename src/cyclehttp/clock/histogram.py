"""Fixed-size, log-bucketed (HDR-like) histogram of durations in nanoseconds.

Built for the server's hot path: recording a value is one bucket index (a
table lookup, ``FAST_INDEX``) and one list increment, nothing else; the
protocol inlines it. Everything a reader wants is computed from the buckets,
when it is read.

Resolution and range:

* values ``0..15`` ns each get their own, exact bucket;
* every octave ``[2**k, 2**(k+1))`` for ``4 <= k < 46`` is split into 8 equal
  sub-buckets, so a bucket's width is at most 12.5% of its lower bound
  (``(upper - lower + 1) / lower <= 0.125``);
* values ``>= CAP_NS = 2**46`` ns (~19.5 hours) are clamped into one final
  overflow bucket whose upper bound is *reported* as ``CAP_NS`` (an exporter
  should render it as ``+Inf``).

That makes ``NUM_BUCKETS = 16 + 42 * 8 + 1 = 353`` counters, allocated once.
Negative values (e.g. from a clock going backwards) are recorded as 0.

What is read, and how accurate it is (HdrHistogram, too, reports its minimum,
maximum and mean at the buckets' resolution):

* ``count`` is exact;
* ``min``, ``max`` and the percentiles are the upper bound of the bucket that
  holds them: never below the true value and at most 12.5% above it;
* ``sum`` (and the mean) counts each value at its bucket's midpoint: within
  6.25% of the true sum.

Keeping ``sum``, ``min`` and ``max`` exact cost three more updates per request
on the hot path, about 1% of CPU on the cheapest requests (benchmarks/RESULTS.md,
"Request timing: bucket counts only").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CAP_NS",
    "FAST_INDEX",
    "FAST_SHIFT",
    "NUM_BUCKETS",
    "HistogramSnapshot",
    "LogHistogram",
    "bucket_index",
]

CAP_NS = 1 << 46
"""Values at or above this many ns all land in the last (overflow) bucket."""

_OVERFLOW = 16 + (46 - 4) * 8  # index of the overflow bucket (352)
NUM_BUCKETS = _OVERFLOW + 1


def bucket_index(value_ns: int) -> int:
    """Return the bucket index for ``value_ns`` (the maths :meth:`LogHistogram.record` inlines).

    For ``v >= 8`` with ``s = v.bit_length() - 4``, ``v >> s`` is the top four bits of
    ``v`` (8..15), i.e. 8 + the sub-bucket within the octave, and ``s << 3`` advances
    8 buckets per octave; values below 16 map to themselves.
    """
    if value_ns < 16:
        return value_ns if value_ns > 0 else 0
    if value_ns >= CAP_NS:
        return _OVERFLOW
    s = value_ns.bit_length() - 4
    return (s << 3) + (value_ns >> s)


def _upper_bound(i: int) -> int:
    """Inclusive upper bound of bucket ``i`` (inverse of :func:`bucket_index`)."""
    if i < 16:
        return i
    if i >= _OVERFLOW:
        return CAP_NS
    s, m = (i >> 3) - 1, (i & 7) + 8
    return ((m + 1) << s) - 1


_UPPER_BOUNDS: tuple[int, ...] = tuple(_upper_bound(i) for i in range(NUM_BUCKETS))


FAST_SHIFT = 4
"""``FAST_INDEX[v >> FAST_SHIFT]`` is ``bucket_index(v)`` for ``128 <= v < 2**18`` ns."""

FAST_INDEX: list[int] = [
    bucket_index(q << FAST_SHIFT) if q << FAST_SHIFT >= 128 else NUM_BUCKETS
    for q in range(1 << (18 - FAST_SHIFT))
]
"""Bucket indexes by table, for the hot path: one shift and one lookup instead of a
``bit_length`` and three shifts and adds.

From 128 ns up, a bucket is at least 16 ns wide and starts on a multiple of 16, so
the bits shifted off never decide the bucket. Below 128 ns the entry is
``NUM_BUCKETS``, so using it on a bucket list raises IndexError, as do values of
2**18 ns (262 us) and more: the caller then records the exact way. A list of 16,384
small ints (128 kB); the protocol inlines the lookup.
"""

_LOWER_BOUNDS: tuple[int, ...] = (0, *(upper + 1 for upper in _UPPER_BOUNDS[:-1]))

_MIDPOINTS: tuple[int, ...] = (
    *((lower + upper) // 2 for lower, upper in zip(_LOWER_BOUNDS[:-1], _UPPER_BOUNDS[:-1], strict=True)),
    CAP_NS,
)
"""Each bucket's middle value, for ``sum``; the overflow bucket's is its lower bound."""


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Immutable summary of a :class:`LogHistogram`, safe to hand to reporters.

    ``count`` is exact; the other figures have the bucket resolution (see
    :mod:`cyclehttp.histogram`).
    """

    count: int
    sum_ns: int
    min_ns: int
    max_ns: int
    p50_ns: int
    p90_ns: int
    p99_ns: int
    p999_ns: int
    mean_ns: float
    buckets: tuple[tuple[int, int], ...]
    """Non-empty buckets as ``(upper_bound_ns, count)``, in ascending order."""


class LogHistogram:
    """Log-bucketed histogram of non-negative ns durations with fixed memory.

    ``count`` is exact; ``min``, ``max``, the percentiles and ``sum`` are read
    from the buckets (see :mod:`cyclehttp.histogram`); all are 0 while empty.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: list[int] = [0] * NUM_BUCKETS
        """One counter per bucket. The protocol increments them itself, inlining
        :meth:`record`; anything else should call :meth:`record`."""

    @property
    def count(self) -> int:
        """Values recorded."""
        return sum(self.counts)

    @property
    def sum(self) -> int:
        """The values' sum, each counted at its bucket's midpoint (within 6.25%)."""
        return sum(c * mid for c, mid in zip(self.counts, _MIDPOINTS, strict=True) if c)

    @property
    def min(self) -> int:
        """Upper bound of the lowest non-empty bucket (0 while empty)."""
        for i, c in enumerate(self.counts):
            if c:
                return _UPPER_BOUNDS[i]
        return 0

    @property
    def max(self) -> int:
        """Upper bound of the highest non-empty bucket (0 while empty)."""
        counts = self.counts
        for i in range(NUM_BUCKETS - 1, -1, -1):
            if counts[i]:
                return _UPPER_BOUNDS[i]
        return 0

    def record(self, value_ns: int) -> None:
        """Record one duration; negative values count as 0."""
        self.counts[bucket_index(value_ns)] += 1

    def record_many(self, value_ns: int, times: int) -> None:
        """Record the same duration ``times`` times (requests answered in one write)."""
        if times > 0:
            self.counts[bucket_index(value_ns)] += times

    def percentile(self, q: float) -> int:
        """Estimate the ``q``-th percentile (0..100) in ns; 0 when empty.

        Returns the upper bound of the bucket holding rank ``ceil(q/100 * count)``
        (at least 1): never below the true value, and at most 12.5% above it
        (below ``CAP_NS``; an overflow-bucket hit returns ``CAP_NS``).
        """
        if not 0.0 <= q <= 100.0:  # also rejects NaN
            raise ValueError(f"percentile must be in [0, 100], got {q!r}")
        n = self.count
        if n == 0:
            return 0
        rank = min(max(1, math.ceil(q / 100.0 * n)), n)
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return _UPPER_BOUNDS[i]
        raise AssertionError("unreachable: the buckets hold count values")

    @staticmethod
    def bucket_upper_bounds() -> list[int]:
        """Inclusive upper bound of every bucket in ns (the last one reports ``CAP_NS``)."""
        return list(_UPPER_BOUNDS)

    def nonzero_buckets(self) -> list[tuple[int, int]]:
        """``(upper_bound_ns, count)`` for each non-empty bucket, ascending."""
        return [(ub, c) for ub, c in zip(_UPPER_BOUNDS, self.counts, strict=True) if c]

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s observations into ``self`` (e.g. aggregating workers)."""
        counts = self.counts
        for i, c in enumerate(other.counts):
            if c:
                counts[i] += c

    def reset(self) -> None:
        """Forget all observations (the bucket list is reused, not reallocated)."""
        counts = self.counts
        for i in range(NUM_BUCKETS):
            counts[i] = 0

    def snapshot(self) -> HistogramSnapshot:
        """Return an immutable summary with the usual percentiles and the mean."""
        n = self.count
        total = self.sum
        return HistogramSnapshot(
            count=n,
            sum_ns=total,
            min_ns=self.min,
            max_ns=self.max,
            p50_ns=self.percentile(50),
            p90_ns=self.percentile(90),
            p99_ns=self.percentile(99),
            p999_ns=self.percentile(99.9),
            mean_ns=total / n if n else 0.0,
            buckets=tuple(self.nonzero_buckets()),
        )

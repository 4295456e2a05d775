"""Fixed-size, log-bucketed (HDR-like) histogram of durations in nanoseconds.

Built for the server's hot path: :meth:`LogHistogram.record` costs a few integer
operations and one list increment, never allocates beyond Python ints and never
touches floats, so it can run once per connection or request.

Resolution and range:

* values ``0..15`` ns each get their own, exact bucket;
* every octave ``[2**k, 2**(k+1))`` for ``4 <= k < 46`` is split into 8 equal
  sub-buckets, so a bucket's width is at most 12.5% of its lower bound
  (``(upper - lower + 1) / lower <= 0.125``) and any percentile estimate is
  within 12.5% above the true value;
* values ``>= CAP_NS = 2**46`` ns (~19.5 hours) are clamped into one final
  overflow bucket whose upper bound is *reported* as ``CAP_NS`` (an exporter
  should render it as ``+Inf``); ``min``/``max``/``sum`` stay exact regardless.

That makes ``NUM_BUCKETS = 16 + 42 * 8 + 1 = 353`` counters, allocated once.
Negative values (e.g. from a clock going backwards) are recorded as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CAP_NS",
    "NUM_BUCKETS",
    "HistogramSnapshot",
    "LogHistogram",
    "bucket_index",
]

CAP_NS = 1 << 46
"""Values at or above this many ns all land in the last (overflow) bucket."""

_OVERFLOW = 16 + (46 - 4) * 8  # index of the overflow bucket (352)
NUM_BUCKETS = _OVERFLOW + 1
_NO_MIN = 1 << 64


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


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Immutable summary of a :class:`LogHistogram`, safe to hand to reporters."""

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

    ``count``, ``sum``, ``min`` and ``max`` are exact (``min`` and ``max`` are 0
    while empty); percentiles are bucket-resolution estimates.
    """

    __slots__ = ("_counts", "_min", "max", "sum")

    def __init__(self) -> None:
        self._counts: list[int] = [0] * NUM_BUCKETS
        self.sum = 0
        self._min = _NO_MIN  # above any real value: no "is empty" test per record
        self.max = 0

    @property
    def count(self) -> int:
        """Values recorded (summed from the buckets, so recording has one counter less to bump)."""
        return sum(self._counts)

    @property
    def min(self) -> int:
        """The smallest value recorded (0 while empty)."""
        return self._min if self._min != _NO_MIN else 0

    def record(self, value_ns: int) -> None:
        """Record one duration; negative values count as 0. Hot path: keep it cheap.

        The protocol inlines this body where a method call would cost as much as the rest.
        """
        v = value_ns
        if v < 16:
            self.record_many(v, 1)
            return
        try:
            s = v.bit_length() - 4
            self._counts[(s << 3) + (v >> s)] += 1
        except IndexError:  # at or above CAP_NS, past the overflow bucket
            self._counts[_OVERFLOW] += 1
        self.sum += v
        if v > self.max:
            self.max = v
        if v < self._min:
            self._min = v

    def record_many(self, value_ns: int, times: int) -> None:
        """Record the same duration ``times`` times (requests answered in one write)."""
        if times <= 0:
            return
        v = value_ns if value_ns > 0 else 0
        self._counts[bucket_index(v)] += times
        self.sum += v * times
        if v > self.max:
            self.max = v
        if v < self._min:
            self._min = v

    def percentile(self, q: float) -> int:
        """Estimate the ``q``-th percentile (0..100) in ns; 0 when empty.

        Returns the upper bound of the bucket holding rank ``ceil(q/100 * count)``
        (at least 1), clamped to ``[min, max]`` so it never leaves the observed
        range; an overflow-bucket hit returns ``max``. Never below the true value,
        and at most 12.5% above it (below ``CAP_NS``).
        """
        if not 0.0 <= q <= 100.0:  # also rejects NaN
            raise ValueError(f"percentile must be in [0, 100], got {q!r}")
        n = self.count
        if n == 0:
            return 0
        rank = min(max(1, math.ceil(q / 100.0 * n)), n)
        seen = 0
        for i, c in enumerate(self._counts):
            seen += c
            if seen >= rank:
                if i == _OVERFLOW:
                    return self.max
                return min(max(_UPPER_BOUNDS[i], self.min), self.max)
        return self.max  # unreachable while counts and count agree

    @staticmethod
    def bucket_upper_bounds() -> list[int]:
        """Inclusive upper bound of every bucket in ns (the last one reports ``CAP_NS``)."""
        return list(_UPPER_BOUNDS)

    def nonzero_buckets(self) -> list[tuple[int, int]]:
        """``(upper_bound_ns, count)`` for each non-empty bucket, ascending."""
        return [(ub, c) for ub, c in zip(_UPPER_BOUNDS, self._counts, strict=True) if c]

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s observations into ``self`` (e.g. aggregating workers)."""
        if other._min == _NO_MIN:
            return
        counts = self._counts
        for i, c in enumerate(other._counts):
            if c:
                counts[i] += c
        self._min = min(self._min, other._min)
        self.max = max(self.max, other.max)
        self.sum += other.sum

    def reset(self) -> None:
        """Forget all observations (the bucket list is reused, not reallocated)."""
        counts = self._counts
        for i in range(NUM_BUCKETS):
            counts[i] = 0
        self.sum = self.max = 0
        self._min = _NO_MIN

    def snapshot(self) -> HistogramSnapshot:
        """Return an immutable summary with the usual percentiles and the mean."""
        n = self.count
        return HistogramSnapshot(
            count=n,
            sum_ns=self.sum,
            min_ns=self.min,
            max_ns=self.max,
            p50_ns=self.percentile(50),
            p90_ns=self.percentile(90),
            p99_ns=self.percentile(99),
            p999_ns=self.percentile(99.9),
            mean_ns=self.sum / n if n else 0.0,
            buckets=tuple(self.nonzero_buckets()),
        )

"""Tests for cyclehttp.histogram: bucket maths, exact counts and the accuracy of everything else."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyclehttp.clock.histogram import (
    CAP_NS,
    FAST_INDEX,
    FAST_SHIFT,
    NUM_BUCKETS,
    HistogramSnapshot,
    LogHistogram,
    bucket_index,
)

UPPER = LogHistogram.bucket_upper_bounds()
LOWER = [0, *(u + 1 for u in UPPER[:-1])]

values_below_cap = st.lists(st.integers(min_value=0, max_value=CAP_NS - 1), max_size=200)
any_values = st.lists(st.integers(min_value=-(10**6), max_value=CAP_NS * 4), max_size=100)
quantiles = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def make(values: list[int]) -> LogHistogram:
    h = LogHistogram()
    for v in values:
        h.record(v)
    return h


def test_bucket_layout() -> None:
    assert len(UPPER) == NUM_BUCKETS == 16 + 42 * 8 + 1
    assert all(a < b for a, b in pairwise(UPPER))
    assert UPPER[-1] == CAP_NS
    assert UPPER[-2] == CAP_NS - 1


def test_exact_small_buckets() -> None:
    for v in range(16):
        assert bucket_index(v) == v
        assert LOWER[v] == UPPER[v] == v


def test_bucket_boundaries_round_trip() -> None:
    for i, (lo, hi) in enumerate(zip(LOWER, UPPER, strict=True)):
        assert bucket_index(lo) == i
        assert bucket_index(hi) == i
        if i + 1 < NUM_BUCKETS:
            assert bucket_index(hi + 1) == i + 1
        if lo > 0:
            assert bucket_index(lo - 1) == i - 1


def test_relative_width() -> None:
    for lo, hi in zip(LOWER, UPPER, strict=True):
        if lo >= 16:
            assert (hi - lo + 1) / lo <= 0.125


def test_fast_index_is_bucket_index_from_128_ns_to_its_end() -> None:
    """The protocol's table lookup gives the bucket ``record`` would, or an index past the
    bucket list (so the caller's IndexError sends it the exact way)."""
    assert len(FAST_INDEX) << FAST_SHIFT == 1 << 18
    for v in range(1 << 18):
        expected = bucket_index(v) if v >= 128 else NUM_BUCKETS
        assert FAST_INDEX[v >> FAST_SHIFT] == expected, v
    with pytest.raises(IndexError):
        FAST_INDEX[(1 << 18) >> FAST_SHIFT]


@given(st.integers(min_value=0, max_value=CAP_NS * 8))
def test_record_uses_bucket_index(v: int) -> None:
    h = make([v])
    i = bucket_index(v)
    assert h.nonzero_buckets() == [(UPPER[i], 1)]
    if v < CAP_NS:
        assert LOWER[i] <= v <= UPPER[i]
    else:
        assert i == NUM_BUCKETS - 1


@given(any_values)
def test_count_is_exact_and_min_max_are_bucket_upper_bounds(values: list[int]) -> None:
    h = make(values)
    clamped = [min(max(v, 0), CAP_NS) for v in values]
    assert h.count == len(values)
    assert sum(c for _, c in h.nonzero_buckets()) == len(values)
    if not values:
        assert (h.sum, h.min, h.max) == (0, 0, 0)
        return
    for reported, true in ((h.min, min(clamped)), (h.max, max(clamped))):
        assert reported == UPPER[bucket_index(true)]
        assert true <= reported <= true * 1.125 + 1  # never below, at most 12.5% above


@given(values_below_cap)
def test_sum_is_within_the_half_bucket_width(values: list[int]) -> None:
    h = make(values)
    true = sum(values)
    assert abs(h.sum - true) <= true * 0.0625 + 1
    assert h.snapshot().mean_ns == (h.sum / len(values) if values else 0.0)


def test_values_under_16_ns_are_exact() -> None:
    h = make([3, 3, 15])
    assert (h.count, h.sum, h.min, h.max, h.percentile(50)) == (3, 21, 3, 15, 3)


@given(values_below_cap.filter(bool), quantiles)
def test_percentile_accuracy(values: list[int], q: float) -> None:
    h = make(values)
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(values)))
    true = ordered[rank - 1]
    p = h.percentile(q)
    assert true <= p <= true * 1.125 + 1
    assert h.min <= p <= h.max
    assert h.percentile(100) == h.max


@given(any_values, st.lists(quantiles, min_size=2, max_size=10))
def test_percentile_monotonic_and_in_range(values: list[int], qs: list[float]) -> None:
    h = make(values)
    ps = [h.percentile(q) for q in sorted(qs)]
    assert ps == sorted(ps)
    for p in ps:
        assert h.min <= p <= h.max


@given(any_values, any_values)
def test_merge_equals_recording_all(a: list[int], b: list[int]) -> None:
    merged = make(a)
    merged.merge(make(b))
    assert merged.snapshot() == make(a + b).snapshot()


def test_reset_and_empty() -> None:
    h = make([1, 100, 10**9])
    h.reset()
    assert (h.count, h.sum, h.min, h.max) == (0, 0, 0, 0)
    assert h.nonzero_buckets() == []
    for q in (0, 50, 99.9, 100):
        assert h.percentile(q) == 0
    assert h.snapshot() == HistogramSnapshot(0, 0, 0, 0, 0, 0, 0, 0, 0.0, ())
    h.record(7)
    assert (h.count, h.min, h.max, h.percentile(50)) == (1, 7, 7, 7)
    h.record_many(1000, 3)
    h.record_many(5, 0)
    assert (h.count, h.max) == (4, 1023)


def test_negative_values_clamp_to_zero() -> None:
    h = make([-5, -(10**12)])
    assert (h.count, h.sum, h.min, h.max) == (2, 0, 0, 0)
    assert h.nonzero_buckets() == [(0, 2)]
    assert bucket_index(-1) == 0


def test_huge_values_clamp_to_last_bucket() -> None:
    h = make([CAP_NS, CAP_NS * 1000, 10**30])
    assert h.nonzero_buckets() == [(CAP_NS, 3)]
    assert h.max == h.min == h.percentile(100) == h.percentile(0) == CAP_NS
    assert h.sum == 3 * CAP_NS  # the overflow bucket counts at its lower bound


def test_snapshot_fields() -> None:
    h = make([10, 20, 30, 40])
    s = h.snapshot()
    # 10 has an exact bucket; 20, 30 and 40 fall in [20, 21], [30, 31] and [40, 43].
    assert (s.count, s.sum_ns, s.min_ns, s.max_ns, s.mean_ns) == (4, 10 + 20 + 30 + 41, 10, 43, 25.25)
    assert s.p50_ns == 21 and s.p999_ns == 43
    assert s.buckets == tuple(h.nonzero_buckets())
    with pytest.raises(AttributeError):
        s.count = 5  # type: ignore[misc]


@pytest.mark.parametrize("q", [-0.001, -1, 100.0001, 1000, math.nan, math.inf])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        make([1]).percentile(q)

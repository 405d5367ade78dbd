"""Aggregate kernels against the naive versions: hand-picked, random (hypothesis), empty, single, NaN/inf, ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing import _kernels
from processing.aggregates import completeness, group_stats, window_stats
from tests.processing import naive

QUANTILES = (0.5, 0.95)
FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
ANY_FLOAT = st.one_of(FINITE, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 1.0, 2.0]))


def _check_groups(group: list[int], values: list[float], quantiles: tuple[float, ...] = QUANTILES) -> None:
    result = group_stats(np.array(group, dtype=np.int64), np.array(values), quantiles=quantiles)
    expected_groups = sorted(set(group))
    assert result.count.size == len(expected_groups)
    for i, g in enumerate(expected_groups):
        members = [v for gg, v in zip(group, values, strict=True) if gg == g]
        want = naive.stats(members, quantiles)
        got = [
            float(result.count[i]),
            result.sum[i],
            result.mean[i],
            result.min[i],
            result.max[i],
            *(result.quantiles[q][i] for q in quantiles),
        ]
        assert all(naive.same(a, b) for a, b in zip(got, want, strict=True)), (members, got, want)


@pytest.mark.parametrize(
    ("values", "p50", "p95"),
    [
        ([1.0, 2.0, 3.0, 4.0], 2.5, 3.85),  # h50 = 1.5, h95 = 2.85 -> 3 + 0.85 * (4 - 3)
        ([40.0, 42.0, 47.0], 42.0, 46.5),  # h95 = 1.9 -> 42 + 0.9 * 5
        ([7.0], 7.0, 7.0),
        ([5.0, 5.0, 5.0, 5.0, 5.0], 5.0, 5.0),
        ([3.0, 1.0, 2.0], 2.0, 2.9),
        ([1.0, math.inf], math.inf, math.inf),
        ([-math.inf, 1.0, 2.0], 1.0, 1.9),
        ([1.0, math.nan, 3.0], 2.0, 2.9),
    ],
)
def test_hand_picked_percentiles(values: list[float], p50: float, p95: float) -> None:
    result = group_stats(np.zeros(len(values), dtype=np.int64), np.array(values))
    assert result.p50[0] == pytest.approx(p50)
    assert result.p95[0] == pytest.approx(p95)


def test_empty_input_and_all_nan_group() -> None:
    empty = group_stats(np.array([], dtype=np.int64), np.array([]))
    assert empty.count.size == 0
    result = group_stats(np.array([0, 0, 1]), np.array([math.nan, math.nan, 4.0]))
    assert result.count.tolist() == [0, 1]
    assert result.sum[0] == 0.0
    assert all(math.isnan(getattr(result, f)[0]) for f in ("mean", "min", "max", "p50", "p95"))
    assert (result.mean[1], result.p95[1]) == (4.0, 4.0)


def test_infinities() -> None:
    result = group_stats(np.zeros(3, dtype=np.int64), np.array([math.inf, -math.inf, 0.0]))
    assert math.isnan(result.mean[0])  # inf + -inf, as in NumPy
    assert (result.min[0], result.max[0], result.p50[0], result.p95[0]) == (-math.inf, math.inf, 0.0, math.inf)
    between = group_stats(np.zeros(2, dtype=np.int64), np.array([-math.inf, math.inf]))
    assert math.isnan(between.p50[0])  # no value lies "halfway" between -inf and +inf


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), ANY_FLOAT), max_size=200))
def test_random_groups_match_naive(pairs: list[tuple[int, float]]) -> None:
    pairs.sort(key=lambda p: p[0])
    _check_groups([g for g, _ in pairs], [v for _, v in pairs])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 400),
    st.integers(0, 3),
    st.lists(st.floats(0, 1), min_size=1, max_size=4, unique=True),
)
def test_long_groups_with_ties_match_naive(n: int, distinct_log: int, quantiles: list[float]) -> None:
    # Few distinct values (1, 2, 4 or 8) make long runs of ties; lengths cross the selection thresholds.
    rng = np.random.default_rng(n * 7 + distinct_log)
    values = rng.integers(0, 2**distinct_log, size=n).astype(float).tolist()
    _check_groups([0] * n, values, tuple(sorted(quantiles)))


@pytest.mark.parametrize("n", [1, 2, 16, 17, 33, 60, 61, 100, 1000, 3601])
@pytest.mark.parametrize("shape", ["random", "sorted", "reversed", "equal", "organ", "two_values"])
def test_finite_percentiles_equal_numpy(n: int, shape: str) -> None:
    rng = np.random.default_rng(n)
    values = {
        "random": rng.normal(40, 10, n),
        "sorted": np.arange(n, dtype=float),
        "reversed": np.arange(n, 0, -1, dtype=float),
        "equal": np.full(n, 3.5),
        "organ": np.concatenate([np.arange(n // 2), np.arange(n - n // 2, 0, -1)]).astype(float),
        "two_values": np.where(np.arange(n) % 3 == 0, 1.0, 2.0),
    }[shape]
    result = group_stats(np.zeros(n, dtype=np.int64), values, quantiles=(0.05, 0.5, 0.95, 0.99))
    for q in (0.05, 0.5, 0.95, 0.99):
        assert result.quantiles[q][0] == np.percentile(values, q * 100)  # bit for bit
    assert result.sum[0] == pytest.approx(values.sum(), rel=1e-12)
    assert (result.min[0], result.max[0]) == (values.min(), values.max())


@settings(max_examples=100, deadline=None)
@given(st.lists(FINITE, min_size=1, max_size=300), st.data())
def test_select_partitions(values: list[float], data: st.DataObject) -> None:
    buf = np.array(values)
    k = data.draw(st.integers(0, len(values) - 1))
    _kernels._select(buf, 0, buf.size, k)
    assert sorted(buf.tolist()) == sorted(values)
    assert buf[k] == sorted(values)[k]
    assert all(v <= buf[k] for v in buf[:k])
    assert all(v >= buf[k] for v in buf[k + 1 :])


def test_select_worst_case_inputs_stay_correct() -> None:
    # Inputs that defeat a median-of-three pivot still end correct (the round limit falls back to a sort).
    n = 2000
    killer = np.empty(n)
    killer[0::2] = np.arange(n // 2)
    killer[1::2] = np.arange(n // 2) + n // 2
    for k in (0, n // 2, n - 1):
        buf = killer.copy()
        _kernels._select(buf, 0, n, k)
        assert buf[k] == np.sort(killer)[k]


def _naive_windows(
    series: list[int], ts_us: list[int], values: list[float], width_s: int
) -> dict[tuple[int, int], list[float]]:
    groups: dict[tuple[int, int], list[float]] = {}
    width_us = width_s * 1_000_000
    for s, t, v in zip(series, ts_us, values, strict=True):
        groups.setdefault((s, t // width_us * width_us), []).append(v)
    return groups


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(-(10**9), 10**9), ANY_FLOAT), max_size=150),
    st.sampled_from([60, 3600, 86400]),
)
def test_window_stats_match_naive(rows: list[tuple[int, int, float]], width_s: int) -> None:
    rows.sort(key=lambda r: (r[0], r[1]))
    series = [r[0] for r in rows]
    ts_us = [r[1] * 1000 for r in rows]
    values = [r[2] for r in rows]
    result = window_stats(np.array(series), np.array(ts_us, dtype=np.int64), np.array(values), width_s)
    want = _naive_windows(series, ts_us, values, width_s)
    assert list(zip(result.series.tolist(), result.window_start_us.tolist(), strict=True)) == sorted(want)
    for i, key in enumerate(sorted(want)):
        expected = naive.stats(want[key], QUANTILES)
        got = [
            float(result.stats.count[i]),
            result.stats.sum[i],
            result.stats.mean[i],
            result.stats.min[i],
            result.stats.max[i],
            result.stats.p50[i],
            result.stats.p95[i],
        ]
        assert all(naive.same(a, b) for a, b in zip(got, expected, strict=True))


def test_windows_are_utc_aligned_and_negative_times_floor() -> None:
    minute = 60_000_000
    ts = np.array([-1, 0, minute - 1, minute, 5 * minute + 7], dtype=np.int64)
    result = window_stats(np.zeros(5, dtype=np.int64), ts, np.arange(5.0), 60)
    assert result.window_start_us.tolist() == [-minute, 0, minute, 5 * minute]
    assert result.stats.count.tolist() == [1, 2, 1, 1]


def test_wrappers_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="sorted"):
        group_stats(np.array([1, 0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="same length"):
        group_stats(np.array([0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="sorted"):
        window_stats(np.array([0, 0]), np.array([5, 1]), np.array([1.0, 2.0]), 60)
    with pytest.raises(ValueError, match="sorted"):
        window_stats(np.array([1, 0]), np.array([1, 5]), np.array([1.0, 2.0]), 60)
    with pytest.raises(ValueError, match="quantiles"):
        group_stats(np.array([0]), np.array([1.0]), quantiles=(1.5,))
    with pytest.raises(ValueError, match="one-dimensional"):
        group_stats(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="positive"):
        completeness([1], [0], 60)


@pytest.mark.parametrize(
    ("count", "interval_s", "width_s", "expected"),
    [
        (60, 1, 60, 1.0),
        (30, 1, 60, 0.5),
        (45, 60, 3600, 0.75),
        (61, 60, 3600, 61 / 60),
        (1, 300, 60, 1.0),  # a 1-minute window of a 5-minute counter is complete with its one reading
        (0, 60, 60, 0.0),
        (288, 300, 86400, 1.0),
    ],
)
def test_completeness(count: int, interval_s: int, width_s: int, expected: float) -> None:
    assert completeness([count], [interval_s], [width_s])[0] == pytest.approx(min(1.0, expected))

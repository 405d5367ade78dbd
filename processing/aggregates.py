"""Windowed aggregates: validate inputs, call the kernels of `processing._kernels`, name the outputs.

Statistics per group (a run of equal ids, or one series in one time window): count, sum, mean, min, max and the
exact percentiles p50 and p95, defined as NumPy's default (linear interpolation between order statistics,
Hyndman & Fan type 7; see `processing._kernels`). NaN values are skipped; +/-inf count as values.
Completeness is the share of the readings a window should hold that it holds: min(1, count / (width / interval_s)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from processing import _kernels
from processing._kernels import COUNT, FIRST_QUANTILE, MAX, MEAN, MIN, SUM

#: The two percentiles every stored aggregate carries.
P50 = 0.5
P95 = 0.95
DEFAULT_QUANTILES = (P50, P95)

_US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Statistics per group, in the order the groups appear in the input. `starts[i]` is group i's first row."""

    starts: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    sum: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    #: Per requested quantile q (0..1), the type-7 percentile p(q) of each group.
    quantiles: dict[float, npt.NDArray[np.float64]]

    @property
    def p50(self) -> npt.NDArray[np.float64]:
        return self.quantiles[P50]

    @property
    def p95(self) -> npt.NDArray[np.float64]:
        return self.quantiles[P95]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Statistics per (series, window): `series[i]` and `window_start_us[i]` name row i of `stats`."""

    series: npt.NDArray[np.int64]
    window_start_us: npt.NDArray[np.int64]
    stats: GroupStats


def _as_1d(name: str, values: npt.ArrayLike, dtype: type[np.generic]) -> npt.NDArray[Any]:
    array: npt.NDArray[Any] = np.ascontiguousarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    return array


def _check_quantiles(quantiles: tuple[float, ...]) -> npt.NDArray[np.float64]:
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or bool(np.any(np.isnan(q))) or bool(np.any((q < 0) | (q > 1))):
        raise ValueError("quantiles must lie in [0, 1]")
    if len(set(quantiles)) != len(quantiles):
        raise ValueError("quantiles must be distinct")
    return np.sort(q)


def _stats(values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], quantiles: tuple[float, ...]) -> GroupStats:
    q = _check_quantiles(quantiles)
    out = _kernels._segment_stats(values, starts, q)
    return GroupStats(
        starts=starts[:-1],
        count=out[:, COUNT].astype(np.int64),
        sum=out[:, SUM],
        mean=out[:, MEAN],
        min=out[:, MIN],
        max=out[:, MAX],
        quantiles={float(v): out[:, FIRST_QUANTILE + i] for i, v in enumerate(q)},
    )


def group_stats(
    group: npt.ArrayLike, values: npt.ArrayLike, *, quantiles: tuple[float, ...] = DEFAULT_QUANTILES
) -> GroupStats:
    """Statistics of `values` per run of equal `group` ids. `group` must be sorted (non-decreasing)."""
    g = _as_1d("group", group, np.int64)
    v = _as_1d("values", values, np.float64)
    if g.shape != v.shape:
        raise ValueError("group and values must have the same length")
    if g.size > 1 and bool(np.any(g[1:] < g[:-1])):
        raise ValueError("group must be sorted")
    return _stats(v, _kernels._segment_starts(g), quantiles)


def window_stats(
    series: npt.ArrayLike,
    ts_us: npt.ArrayLike,
    values: npt.ArrayLike,
    width_s: int,
    *,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
) -> WindowStats:
    """Statistics per series and UTC-aligned window `[k width, (k + 1) width)`.

    Rows must be sorted by (series, ts_us); `ts_us` is microseconds since the Unix epoch.
    """
    s = _as_1d("series", series, np.int64)
    t = _as_1d("ts_us", ts_us, np.int64)
    v = _as_1d("values", values, np.float64)
    if not s.shape == t.shape == v.shape:
        raise ValueError("series, ts_us and values must have the same length")
    if width_s <= 0:
        raise ValueError("width_s must be positive")
    width_us = np.int64(width_s * _US_PER_S)
    starts = _kernels._window_segment_starts(s, t, width_us)
    if starts.size == 0:
        raise ValueError("rows must be sorted by (series, ts_us)")
    return WindowStats(
        series=s[starts[:-1]],
        window_start_us=_kernels._segment_window_starts(t, starts, width_us),
        stats=_stats(v, starts, quantiles),
    )


def completeness(count: npt.ArrayLike, interval_s: npt.ArrayLike, width_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """min(1, count / (width_s / interval_s)) per window: 1.0 when a window holds every reading it should.

    A window shorter than the interval (a 1-minute window of a 5-minute counter) is complete with one reading.
    """
    c = _as_1d("count", count, np.float64)
    interval = np.broadcast_to(np.asarray(interval_s, dtype=np.float64), c.shape)
    width = np.broadcast_to(np.asarray(width_s, dtype=np.float64), c.shape)
    if bool(np.any(interval <= 0)) or bool(np.any(width <= 0)):
        raise ValueError("interval_s and width_s must be positive")
    return _kernels._completeness(c, np.ascontiguousarray(width / interval))


def warm_up() -> None:
    """Compile (or load from the cache) the aggregate kernels so the first real batch is not slow."""
    group_stats(np.array([0, 0, 1], dtype=np.int64), np.array([1.0, 2.0, 3.0]))
    window_stats(np.zeros(40, np.int64), np.arange(40, dtype=np.int64), np.arange(40.0), 60)
    completeness(np.array([1]), np.array([60]), 60.0)

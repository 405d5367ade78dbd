"""Windowed aggregates of the stored readings, computed plainly (CONTRACT.md section 4).

Windows are aligned to UTC, `[start, start + width)`, and a reading belongs to the window containing its `ts`.
Per window: count, mean, min, max, exact p50 and p95 (linear interpolation between order statistics, as NumPy's
default method), and completeness = min(1, count / (width / interval_s)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from livinglab.domain import Window
from simulators.ledger import Series


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The statistics of one sensor, quantity and window."""

    sensor_id: str
    quantity: str
    window: Window
    window_start_s: int
    count: int
    mean: float
    min: float
    max: float
    p50: float
    p95: float
    completeness: float


def quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values, linear between order statistics: x[j] + (h - j) (x[j+1] - x[j]), h = (n-1) q."""
    h = (len(ordered) - 1) * q
    j = int(h)
    upper = ordered[min(j + 1, len(ordered) - 1)]
    return ordered[j] + (h - j) * (upper - ordered[j])


def window_aggregates(
    series: Mapping[tuple[str, str], Series], intervals_s: Mapping[str, int], window: Window
) -> list[Aggregate]:
    """Every non-empty window of every stored series, sorted by sensor, quantity and window start."""
    width_us = window.seconds * 1_000_000
    out: list[Aggregate] = []
    for (sensor_id, quantity), s in sorted(series.items()):
        expected = window.seconds / intervals_s[sensor_id]
        groups: dict[int, list[float]] = {}
        for ts_us, value in zip(s.ts_us.tolist(), s.value.tolist(), strict=True):
            groups.setdefault(ts_us // width_us, []).append(value)
        for bucket, values in groups.items():
            ordered = sorted(values)
            n = len(values)
            out.append(
                Aggregate(
                    sensor_id=sensor_id,
                    quantity=quantity,
                    window=window,
                    window_start_s=bucket * window.seconds,
                    count=n,
                    mean=sum(values) / n,
                    min=ordered[0],
                    max=ordered[-1],
                    p50=quantile(ordered, 0.5),
                    p95=quantile(ordered, 0.95),
                    completeness=min(1.0, n / expected),
                )
            )
    return out


def hourly_means(s: Series) -> dict[int, tuple[float, int]]:
    """Hour start (Unix seconds) -> (mean, count) of a series."""
    hours = s.ts_us // 3_600_000_000
    out: dict[int, tuple[float, int]] = {}
    starts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1]])
    ends = np.r_[starts[1:], hours.size]
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        out[int(hours[a]) * 3600] = (float(s.value[a:b].mean()), b - a)
    return out

"""Slow, obviously correct versions of the kernels, in plain Python, to check the kernels against."""

from __future__ import annotations

import math
from collections.abc import Sequence


def lerp(a: float, b: float, g: float) -> float:
    """Linear interpolation as the kernels define it (NumPy's formula for finite ends)."""
    if a == b or g == 0:
        return a
    if math.isinf(a) and math.isinf(b):
        return math.nan
    if math.isinf(a):
        return a
    if math.isinf(b):
        return b
    return a + (b - a) * g if g < 0.5 else b - (b - a) * (1 - g)


def percentile(values: Sequence[float], q: float) -> float:
    """Hyndman & Fan type 7 over a full sort: h = (n - 1) q, interpolate between x[floor(h)] and the next."""
    x = sorted(v for v in values if not math.isnan(v))
    if not x:
        return math.nan
    h = (len(x) - 1) * q
    k = math.floor(h)
    if k >= len(x) - 1:
        return x[-1]
    return lerp(x[k], x[k + 1], h - k)


def stats(values: Sequence[float], quantiles: Sequence[float]) -> list[float]:
    """count, sum, mean, min, max, then one percentile per quantile; NaN values skipped."""
    x = [v for v in values if not math.isnan(v)]
    if not x:
        return [0.0, 0.0] + [math.nan] * (3 + len(quantiles))
    total = 0.0
    for v in x:  # sequential, like the kernel
        total += v
    return [float(len(x)), total, total / len(x), min(x), max(x), *(percentile(x, q) for q in quantiles)]


def same(a: float, b: float) -> bool:
    """Equal, counting NaN as equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b

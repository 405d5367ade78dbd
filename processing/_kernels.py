"""numba kernels: pure array functions, no validation, no exceptions. Public wrappers live in `aggregates`.

Inputs are sorted by group; a group is the run of equal `group` values. Percentiles are exact, with linear
interpolation between order statistics (NumPy's default, Hyndman-Fan type 7):
    p(q) = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]),  h = (n - 1) * q
over the sorted values x of the group.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Compilation flags of every kernel, in one place.
_kernel = njit(cache=True, nogil=True, fastmath=False)


@_kernel
def _segment_starts(group: np.ndarray) -> np.ndarray:
    """Indices where a new group begins, plus len(group) at the end."""
    n = group.size
    count = 1 if n > 0 else 0
    for i in range(1, n):
        if group[i] != group[i - 1]:
            count += 1
    starts = np.empty(count + 1, dtype=np.int64)
    k = 0
    if n > 0:
        starts[0] = 0
        k = 1
    for i in range(1, n):
        if group[i] != group[i - 1]:
            starts[k] = i
            k += 1
    starts[count] = n
    return starts


@_kernel
def _quantile_sorted(x: np.ndarray, q: float) -> float:
    n = x.size
    h = (n - 1) * q
    lo = int(np.floor(h))
    hi = min(lo + 1, n - 1)
    return float(x[lo] + (h - lo) * (x[hi] - x[lo]))


@_kernel
def _segmented_stats(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment [starts[i], starts[i+1]): count, sum, mean, min, max, p50, p95 (columns 0..6)."""
    m = starts.size - 1
    out = np.empty((m, 7), dtype=np.float64)
    for g in range(m):
        a, b = starts[g], starts[g + 1]
        n = b - a
        seg = np.sort(values[a:b])
        total = 0.0
        for i in range(n):
            total += seg[i]
        out[g, 0] = n
        out[g, 1] = total
        out[g, 2] = total / n
        out[g, 3] = seg[0]
        out[g, 4] = seg[n - 1]
        out[g, 5] = _quantile_sorted(seg, 0.5)
        out[g, 6] = _quantile_sorted(seg, 0.95)
    return out

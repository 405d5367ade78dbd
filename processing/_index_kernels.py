"""Index kernels: rolling means over hourly grids, NowCast, piecewise-linear indices, rounding and truncation.

Pure functions on arrays; no validation, no exceptions. Public wrappers live in `processing.ispu`,
`processing.aqi` and `processing.traffic`.

Hourly grids are 2-D: row s is one sensor, column j the hour [H0 + j h, H0 + (j + 1) h). A value *labelled* by
column j is the one whose last included hour is j, i.e. labelled H0 + (j + 1) h (CONTRACT.md section 4). Missing
hours are NaN in `means` and False in `valid`; hours before column 0 count as missing.
"""

from __future__ import annotations

import numpy as np

from processing._jit import kernel


@kernel
def _rolling_valid_mean(
    means: np.ndarray, valid: np.ndarray, hours: int, min_valid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per label j: the mean of the valid hourly means in hours j - hours + 1 .. j, and how many there are.

    The mean is NaN when fewer than `min_valid` hours are valid. Sums run in time order.
    """
    rows, cols = means.shape
    mean_out = np.full((rows, cols), np.nan)
    count_out = np.zeros((rows, cols), dtype=np.int64)
    for s in range(rows):
        for j in range(cols):
            total = 0.0
            n = 0
            for i in range(max(0, j - hours + 1), j + 1):
                if valid[s, i]:
                    total += means[s, i]
                    n += 1
            count_out[s, j] = n
            if n >= min_valid and n > 0:
                mean_out[s, j] = total / n
    return mean_out, count_out


@kernel
def _nowcast(
    means: np.ndarray, valid: np.ndarray, hours: int, recent_hours: int, min_recent: int, min_weight: float
) -> np.ndarray:
    """EPA NowCast per label j over the valid hourly means c_1 = hour j, c_2 = hour j - 1, ... c_hours.

    NaN unless at least `min_recent` of the `recent_hours` latest hours are valid. Missing hours are left out of both
    sums. w* = min / max over the valid hours (w = 1 when max is 0), w = max(w*, min_weight);
    NowCast = sum w^(i-1) c_i / sum w^(i-1).
    """
    rows, cols = means.shape
    out = np.full((rows, cols), np.nan)
    for s in range(rows):
        for j in range(cols):
            recent = 0
            lo = np.inf
            hi = -np.inf
            for i in range(hours):
                col = j - i
                if col < 0:
                    break
                if valid[s, col]:
                    if i < recent_hours:
                        recent += 1
                    lo = min(lo, means[s, col])
                    hi = max(hi, means[s, col])
            if recent < min_recent:
                continue
            w = 1.0 if hi == 0.0 else max(lo / hi, min_weight)
            num = 0.0
            den = 0.0
            factor = 1.0
            for i in range(hours):
                col = j - i
                if col < 0:
                    break
                if valid[s, col]:
                    num += factor * means[s, col]
                    den += factor
                factor *= w
            out[s, j] = num / den
    return out


@kernel
def _piecewise_index(x: np.ndarray, conc_edges: np.ndarray, index_edges: np.ndarray) -> np.ndarray:
    """Contiguous bands (ISPU): I = (Ia - Ib) / (Xa - Xb) (x - Xb) + Ib in the band Xb < x <= Xa.

    The edges start at 0/0; x <= 0 gives 0, x above the last edge gives the last index. NaN stays NaN.
    """
    out = np.empty(x.size, dtype=np.float64)
    last = conc_edges.size - 1
    for i in range(x.size):
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
        elif v <= conc_edges[0]:
            out[i] = index_edges[0]
        elif v > conc_edges[last]:
            out[i] = index_edges[last]
        else:
            b = 1
            while v > conc_edges[b]:
                b += 1
            xb = conc_edges[b - 1]
            xa = conc_edges[b]
            ib = index_edges[b - 1]
            ia = index_edges[b]
            out[i] = (ia - ib) / (xa - xb) * (v - xb) + ib
    return out


@kernel
def _banded_index(
    c: np.ndarray, bp_lo: np.ndarray, bp_hi: np.ndarray, i_lo: np.ndarray, i_hi: np.ndarray, cap: float
) -> np.ndarray:
    """Bands with their own ends (AQI): Ip = (IHi - ILo) / (BPHi - BPLo) (c - BPLo) + ILo.

    Bands whose breakpoints are NaN are not defined. c goes in the first defined band whose BPHi it does not exceed;
    a c between two bands (above one band's BPHi, below the next one's BPLo) gets the next band's ILo. c below the
    first defined band is NaN (not defined); c above the last defined band gives `cap`. NaN stays NaN.
    """
    out = np.empty(c.size, dtype=np.float64)
    for i in range(c.size):
        v = c[i]
        out[i] = np.nan
        if np.isnan(v):
            continue
        first = True
        found = False
        for b in range(bp_lo.size):
            if np.isnan(bp_lo[b]):
                continue
            if v <= bp_hi[b]:
                if v >= bp_lo[b]:
                    out[i] = (i_hi[b] - i_lo[b]) / (bp_hi[b] - bp_lo[b]) * (v - bp_lo[b]) + i_lo[b]
                elif not first:
                    out[i] = i_lo[b]
                found = True
                break
            first = False
        if not found and not first:
            out[i] = cap
    return out


@kernel
def _largest(sub_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (sensor, label) of `sub_indices[p, s, j]`: the largest defined value and its p (first on ties).

    (NaN, -1) where no p is defined.
    """
    n, rows, cols = sub_indices.shape
    value = np.full((rows, cols), np.nan)
    which = np.full((rows, cols), -1, dtype=np.int64)
    for s in range(rows):
        for j in range(cols):
            for p in range(n):
                v = sub_indices[p, s, j]
                if not np.isnan(v) and (which[s, j] < 0 or v > value[s, j]):
                    value[s, j] = v
                    which[s, j] = p
    return value, which


@kernel
def _round_half_up(x: np.ndarray, epsilon: float) -> np.ndarray:
    """floor(x + 0.5 + epsilon): half up, robust to a value computed a rounding error below .5. NaN stays NaN."""
    out = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        out[i] = np.floor(x[i] + 0.5 + epsilon)
    return out


@kernel
def _round_half_up_to(x: np.ndarray, decimals: int, epsilon: float) -> np.ndarray:
    """Half-up rounding to `decimals` places: floor(x 10^d + 0.5 + epsilon) / 10^d."""
    scale = 10.0**decimals
    out = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        out[i] = np.floor(x[i] * scale + 0.5 + epsilon) / scale
    return out


@kernel
def _product_error(a: float, b: float, product: float) -> float:
    """a b - fl(a b), exactly (Dekker's two-product with Veltkamp splitting; no overflow for the sizes used here)."""
    c = 134217729.0 * a  # 2^27 + 1
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = 134217729.0 * b
    b_hi = c - (c - b)
    b_lo = b - b_hi
    return ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


@kernel
def _truncate(x: np.ndarray, decimals: int, digits: int) -> np.ndarray:
    """EPA truncation to `decimals` places of x first rounded to `digits` significant digits (CONTRACT.md section 4).

    With a = |x| > 0: m = round_half_even(a 10^p), p = digits - 1 - floor(log10 a), is the significand of a in
    `digits` decimal digits, computed from the exact product (two-product), so it equals rounding the exact binary
    value in decimal. The result is floor(+-m 10^(decimals - p)) / 10^decimals, taken in integers, then divided
    once. Zero, NaN and infinities, and magnitudes whose scale 10^p is not exact (p outside 0..22, far from any
    concentration), are floored to `decimals` places directly.
    """
    scale = 10.0**decimals
    out = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        v = x[i]
        a = abs(v)
        if not (a > 0.0 and a < np.inf):
            out[i] = np.floor(v * scale) / scale
            continue
        e = int(np.floor(np.log10(a)))
        if a < 10.0**e:  # log10 rounded up across a power of ten
            e -= 1
        elif a >= 10.0 ** (e + 1):
            e += 1
        p = digits - 1 - e
        if p < 0 or p > 22:
            out[i] = np.floor(v * scale) / scale
            continue
        shift = 10.0**p
        high = a * shift
        low = _product_error(a, shift, high)
        m = np.floor(high)
        fraction = high - m  # exact: high < 2^53
        if fraction > 0.5 or (fraction == 0.5 and (low > 0.0 or (low == 0.0 and m % 2.0 == 1.0))):
            m += 1.0
        significand = np.int64(m)
        q = p - decimals
        if q <= 0:
            kept = significand * np.int64(10) ** np.int64(-q)
            out[i] = (kept if v > 0.0 else -kept) / scale
        else:
            unit = np.int64(10) ** np.int64(q)
            out[i] = (significand // unit if v > 0.0 else -((significand + unit - 1) // unit)) / scale
    return out

"""Aggregate kernels: segmented statistics over sorted arrays. Pure functions; no validation, no exceptions.

Public wrappers that validate their inputs live in `processing.aggregates`.

A *segment* is a run `[starts[g], starts[g + 1])` of an array sorted by group (and, for windows, by time). Per
segment the kernels compute count, sum, mean, min, max and exact percentiles in one pass plus, where needed, a
selection.

Percentiles (NumPy's default, Hyndman & Fan type 7, linear interpolation between order statistics). With the n
values of a segment sorted ascending, x[0] <= ... <= x[n - 1], and 0 <= q <= 1:

    h = (n - 1) q,  k = floor(h),  g = h - k
    p(q) = x[n - 1]                  if k >= n - 1
         = lerp(x[k], x[k + 1], g)   otherwise
    lerp(a, b, g) = a                     if a == b or g == 0
                  = the infinite end      if exactly one end is infinite (NaN between -inf and +inf)
                  = a + (b - a) g         if g < 0.5
                  = b - (b - a) (1 - g)   otherwise  (NumPy's formula: finite results equal np.percentile exactly)

x[k] and x[k + 1] come from a small buffer of the largest values or from quickselect (expected O(n)), never from
a full sort.

NaN values are skipped (count counts the others); a segment without any other value has count 0, sum 0 and NaN
for every other statistic. +/-inf take part like numbers (a mean over +inf and -inf is NaN, as in NumPy).
Sums are sequential in input order, so a segment gives the same bits however it is batched.
"""

from __future__ import annotations

import numpy as np

from processing._jit import kernel

#: Columns of the `_segment_stats` output; quantiles follow from FIRST_QUANTILE on, one column each.
COUNT, SUM, MEAN, MIN, MAX, FIRST_QUANTILE = range(6)
#: Ranges at most this long are finished by insertion sort inside quickselect.
_SMALL = 16
#: The largest quantile is read from a buffer of the segment's largest values when it needs at most this many.
_TOP_MAX = 8


@kernel
def _segment_starts(group: np.ndarray) -> np.ndarray:
    """Indices where a run of equal `group` values begins, then len(group)."""
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


@kernel
def _window_segment_starts(series: np.ndarray, ts_us: np.ndarray, width_us: np.int64) -> np.ndarray:
    """Segment starts of rows sorted by (series, ts): a segment is one series in one window [k w, (k + 1) w).

    Returns an empty array when the rows are not sorted by (series, ts) (the wrapper reports it). Divides only at
    segment starts: within a series, a row opens a new window exactly when it reaches the current window's end.
    """
    n = series.size
    marks = np.empty(n + 1, dtype=np.int64)
    count = 0
    window_end = np.int64(0)
    for i in range(n):
        if i == 0 or series[i] != series[i - 1]:
            if i > 0 and series[i] < series[i - 1]:
                return np.empty(0, dtype=np.int64)
        elif ts_us[i] < window_end:
            if ts_us[i] < ts_us[i - 1]:
                return np.empty(0, dtype=np.int64)
            continue
        marks[count] = i
        count += 1
        window_end = (ts_us[i] // width_us + 1) * width_us
    marks[count] = n
    return marks[: count + 1].copy()


@kernel
def _segment_window_starts(ts_us: np.ndarray, starts: np.ndarray, width_us: np.int64) -> np.ndarray:
    """The window start (microseconds, floor to `width_us`) of each segment."""
    m = starts.size - 1
    out = np.empty(m, dtype=np.int64)
    for g in range(m):
        out[g] = ts_us[starts[g]] // width_us * width_us
    return out


@kernel
def _insertion_sort(buf: np.ndarray, lo: int, hi: int) -> None:
    """Sort buf[lo:hi] in place (fast for the short runs quickselect leaves)."""
    for i in range(lo + 1, hi):
        v = buf[i]
        j = i - 1
        while j >= lo and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v


@kernel
def _move_pivot_last(buf: np.ndarray, left: int, right: int) -> None:
    """Put the median of buf[left], buf[middle], buf[right] at buf[right]."""
    mid = (left + right) >> 1
    a = buf[left]
    b = buf[mid]
    c = buf[right]
    if (a <= b) == (b <= c):
        buf[mid] = c
        buf[right] = b
    elif (b <= a) == (a <= c):
        buf[left] = c
        buf[right] = a


@kernel
def _select(buf: np.ndarray, lo: int, hi: int, k: int) -> None:
    """Partially order buf[lo:hi] in place so that buf[k] is its k-th smallest, buf[lo:k] <= buf[k] <= buf[k+1:hi].

    Quickselect with a median-of-three pivot and a branch-free Lomuto partition (an unconditional swap and a
    conditional increment: random data costs no mispredicted branches). When the pivot is the smallest value, a
    second pass gathers the values equal to it, so runs of ties shrink the range at once. After 2 log2(n) + 4
    rounds without converging it sorts what remains, bounding the worst case at O(n log n). No NaN in buf[lo:hi].
    """
    left = lo
    right = hi - 1
    rounds = 0
    limit = 4
    size = hi - lo
    while size > 1:
        limit += 2
        size >>= 1
    while right - left >= _SMALL:
        rounds += 1
        if rounds > limit:
            buf[left : right + 1].sort()
            return
        _move_pivot_last(buf, left, right)
        pivot = buf[right]
        store = left
        for i in range(left, right):
            x = buf[i]
            buf[i] = buf[store]
            buf[store] = x
            store += x < pivot
        if store == left:
            # Nothing is below the pivot: gather the values equal to it instead.
            for i in range(left, right):
                x = buf[i]
                buf[i] = buf[store]
                buf[store] = x
                store += x <= pivot
            buf[right] = buf[store]
            buf[store] = pivot
            if k <= store:
                return
            left = store + 1
            continue
        buf[right] = buf[store]
        buf[store] = pivot
        # Now buf[left:store] < pivot = buf[store] <= buf[store + 1:right + 1].
        if k == store:
            return
        if k < store:
            right = store - 1
        else:
            left = store + 1
    _insertion_sort(buf, left, right + 1)


@kernel
def _lerp(a: float, b: float, g: float) -> float:
    if a == b or g == 0.0:
        return a
    if np.isinf(a) or np.isinf(b):
        # The limit towards an infinity is that infinity; between -inf and +inf there is none.
        if np.isinf(a) and np.isinf(b):
            return np.nan
        return a if np.isinf(a) else b
    if g < 0.5:
        return a + (b - a) * g
    return b - (b - a) * (1.0 - g)


@kernel
def _min_of(buf: np.ndarray, lo: int, hi: int) -> float:
    best: float = buf[lo]
    for i in range(lo + 1, hi):
        if buf[i] < best:
            best = buf[i]
    return best


@kernel
def _keep_largest(top: np.ndarray, filled: int, capacity: int, v: float) -> int:
    """Keep top[0:filled] the `capacity` largest values seen, ascending; returns the new fill count."""
    if filled < capacity:
        j = filled
        while j > 0 and top[j - 1] > v:
            top[j] = top[j - 1]
            j -= 1
        top[j] = v
        return filled + 1
    if v > top[0]:
        j = 0
        while j + 1 < capacity and top[j + 1] < v:
            top[j] = top[j + 1]
            j += 1
        top[j] = v
    return filled


@kernel
def _segment_stats(values: np.ndarray, starts: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Per segment: count, sum, mean, min, max, then p(q) for each q of `quantiles` (ascending, in [0, 1]).

    The largest quantile of a short segment needs only its few largest values (n - k of them, 4 for p95 of 60):
    those are kept in a small sorted buffer during the pass that copies the segment, which costs one comparison
    per value. Other quantiles use quickselect, largest first, each inside the prefix the previous one left.
    """
    m = starts.size - 1
    nq = quantiles.size
    out = np.empty((m, FIRST_QUANTILE + nq), dtype=np.float64)
    longest = 0
    for g in range(m):
        longest = max(longest, starts[g + 1] - starts[g])
    buf = np.empty(longest, dtype=np.float64)
    top = np.empty(_TOP_MAX, dtype=np.float64)
    q_max = quantiles[nq - 1] if nq > 0 else 0.0
    for g in range(m):
        length = starts[g + 1] - starts[g]
        # n - floor((n - 1) q) never decreases with n, so the bound for `length` covers any NaN-free subset.
        capacity = length - int(np.floor((length - 1) * q_max)) if nq > 0 and length > 0 else 0
        if capacity > _TOP_MAX:
            capacity = 0
        # The values are copied out only when a quantile needs selection over them.
        copy = capacity == 0 or nq > 1
        n = 0
        filled = 0
        total = 0.0
        lo = np.inf
        hi = -np.inf
        for i in range(starts[g], starts[g + 1]):
            v = values[i]
            if np.isnan(v):
                continue
            if copy:
                buf[n] = v
            n += 1
            total += v
            if v < lo:
                lo = v
            if v > hi:
                hi = v
            if capacity > 0 and (filled < capacity or v > top[0]):
                filled = _keep_largest(top, filled, capacity, v)
        out[g, COUNT] = n
        out[g, SUM] = total
        if n == 0:
            for c in range(MEAN, FIRST_QUANTILE + nq):
                out[g, c] = np.nan
            continue
        out[g, MEAN] = total / n
        out[g, MIN] = lo
        out[g, MAX] = hi
        bound = n  # buf[0:bound] holds the `bound` smallest values
        prev_k = -1  # order statistic already in place at buf[prev_k] (-1: none)
        prev_next = hi  # the one after it
        for j in range(nq - 1, -1, -1):
            h = (n - 1) * quantiles[j]
            k = int(np.floor(h))
            if k >= n - 1:
                out[g, FIRST_QUANTILE + j] = hi
                continue
            if j == nq - 1 and capacity > 0:
                offset = k - n + filled
                x_k = top[offset]
                x_next = top[offset + 1]
            elif k == prev_k:
                x_k = buf[k]
                x_next = prev_next
            else:
                _select(buf, 0, bound, k)
                x_k = buf[k]
                x_next = _min_of(buf, k + 1, bound)
                bound = k + 1
                prev_k = k
                prev_next = x_next
            out[g, FIRST_QUANTILE + j] = _lerp(x_k, x_next, h - k)
    return out


@kernel
def _completeness(count: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """min(1, count / expected) per element: the share of the readings a window should hold that it holds."""
    out = np.empty(count.size, dtype=np.float64)
    for i in range(count.size):
        out[i] = min(1.0, count[i] / expected[i])
    return out

"""ISPU, the Indonesian air-quality index (Permen LHK P.14/MENLHK/SETJEN/KUM.1/7/2020), as CONTRACT.md section 4 reads.

For a station and a label H (an hour boundary), over the 24 hours [H - 24 h, H):
- an hourly mean is valid when its hour holds at least 75 % of the readings the sensor's interval_s implies;
- the 24-hour mean of a parameter is the mean of its valid hourly means, valid with at least 18 valid hours;
- its sub-index is the ISPU formula I = (Ia - Ib) / (Xa - Xb) (Xx - Xb) + Ib over contiguous bands (the first from
  0/0), rounded half up to an integer and capped at 500;
- `ispu` is the largest sub-index and `critical_parameter` its parameter (ties: the first in
  `ispu_table().parameters`); the category and colour follow from the value.

Constants come from `livinglab.reference`; the arithmetic runs in `processing._index_kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from livinglab.reference import IspuCategory, index_rules, ispu_table
from processing import _index_kernels as _k

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def valid_hours(count: npt.ArrayLike, interval_s: npt.ArrayLike) -> BoolArray:
    """Whether each hour holds at least the configured share (75 %) of the 3600 / interval_s readings it implies."""
    c = np.asarray(count, dtype=np.float64)
    interval = np.asarray(interval_s, dtype=np.float64)
    if bool(np.any(interval <= 0)):
        raise ValueError("interval_s must be positive")
    # count >= f * 3600 / interval, multiplied out so the comparison of whole numbers is exact.
    return np.asarray(c * interval >= index_rules().min_reading_fraction * 3600.0)


def sub_index(parameter: str, concentration_ug_m3: npt.ArrayLike) -> FloatArray:
    """ISPU sub-index of 24-hour mean concentrations (ug/m3): a whole number in 0..500, NaN where the mean is NaN."""
    table = ispu_table()
    if parameter not in table.parameters:
        raise ValueError(f"{parameter!r} is not an ISPU parameter ({', '.join(table.parameters)})")
    x = np.ascontiguousarray(concentration_ug_m3, dtype=np.float64).ravel()
    conc_edges, index_edges = (np.asarray(e, dtype=np.float64) for e in table.band_edges(parameter))
    raw = _k._piecewise_index(x, conc_edges, index_edges)
    rounded = _k._round_half_up(raw, index_rules().rounding_epsilon)
    capped: FloatArray = np.minimum(rounded, float(table.max_index))
    return capped.reshape(np.shape(concentration_ug_m3))


@dataclass(frozen=True, slots=True)
class IspuGrid:
    """ISPU per sensor (row) and label (column). Parameter axes follow `ispu_table().parameters`."""

    #: The ISPU value (a whole number), NaN when no parameter has a valid 24-hour mean.
    ispu: FloatArray
    #: Index of the critical parameter, -1 when there is no ISPU.
    critical: IntArray
    #: Per parameter, sensor and label: the sub-index (NaN when not valid).
    sub_indices: FloatArray
    #: Per parameter, sensor and label: the 24-hour mean of the valid hours (NaN below the minimum).
    mean_24h: FloatArray
    #: Per parameter, sensor and label: the number of valid hours in the 24.
    hours_valid: IntArray

    @property
    def reported_hours_valid(self) -> IntArray:
        """`hours_valid` of a row: the critical parameter's count, or the best count when there is no ISPU."""
        best = self.hours_valid.max(axis=0)
        critical = np.take_along_axis(self.hours_valid, np.maximum(self.critical, 0)[None], axis=0)[0]
        reported: IntArray = np.where(self.critical >= 0, critical, best)
        return reported


def ispu_grid(means: npt.ArrayLike, valid: npt.ArrayLike) -> IspuGrid:
    """ISPU over hourly grids: `means[p, s, j]` and `valid[p, s, j]` for parameter p, sensor s and hour j.

    The value labelled by column j uses hours j - 23 .. j (columns before 0 count as missing).
    """
    table = ispu_table()
    m = np.asarray(means, dtype=np.float64)
    v = np.asarray(valid, dtype=np.bool_)
    if m.ndim != 3 or m.shape != v.shape or m.shape[0] != len(table.parameters):
        raise ValueError(f"means and valid must have shape ({len(table.parameters)}, sensors, hours)")
    sub = np.empty(m.shape, dtype=np.float64)
    mean_24h = np.empty(m.shape, dtype=np.float64)
    hours_valid = np.empty(m.shape, dtype=np.int64)
    for p, parameter in enumerate(table.parameters):
        mean_24h[p], hours_valid[p] = _k._rolling_valid_mean(
            np.ascontiguousarray(m[p]), np.ascontiguousarray(v[p] & ~np.isnan(m[p])), table.hours, table.min_valid_hours
        )
        sub[p] = sub_index(parameter, mean_24h[p])
    value, critical = _k._largest(sub)
    return IspuGrid(
        ispu=value,
        critical=critical,
        sub_indices=sub,
        mean_24h=mean_24h,
        hours_valid=hours_valid,
    )


def category(ispu: int) -> IspuCategory:
    """Category (Indonesian name) and colour of an ISPU value."""
    return ispu_table().category(ispu)


def warm_up() -> None:
    """Compile (or load from the cache) the kernels ISPU uses."""
    n = len(ispu_table().parameters)
    ispu_grid(np.full((n, 1, 2), 10.0), np.ones((n, 1, 2), dtype=np.bool_))

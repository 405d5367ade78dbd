"""US EPA AQI (40 CFR 58 App. G, 2024 breakpoints) with the NowCast for PM2.5 and PM10.

Per station and label H (an hour boundary; the last included hour is [H - 1 h, H)), from valid hourly means
(CONTRACT.md section 4: at least 75 % of the readings interval_s implies):
- PM2.5 and PM10: the NowCast of the 12 latest hours (valid with 2 of the 3 latest; reference/nowcast.md) on the
  24-hour breakpoints, as AirNow reports them;
- O3 and CO: the mean of the valid hours among the 8 latest (at least 6); above the 8-hour O3 table (0.200 ppm) the
  latest 1-hour O3 value on the 1-hour table (the 8-hour table's top index, 300, when that is below the 1-hour
  table);
- SO2 and NO2: the latest hour; an SO2 hour above the AQI-200 band uses the 24-hour SO2 mean (18 of 24 valid
  hours) on the same breakpoints, and 200 when that mean is not above the band or not valid.
Concentrations are stored in ug/m3 and converted to the table's ppm or ppb at 25 C and 1 atm with the molar masses
of `livinglab.domain`, then truncated to the table's precision as EPA truncates, forgiving only binary
floating-point error (CONTRACT.md section 4: rounded to 9 significant digits first, so 34.99999999999999 is 35.0 and
34.9999999 is 34.9), then turned into a sub-index rounded half up. The AQI is the largest sub-index,
capped at 500; its pollutant is `dominant_pollutant` (ties: the first in `aqi_table().pollutants`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from livinglab.reference import AqiCategory, AqiPollutant, aqi_table, index_rules, nowcast_parameters
from processing import _index_kernels as _k

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def nowcast(means: npt.ArrayLike, valid: npt.ArrayLike) -> FloatArray:
    """Untruncated NowCast per sensor (row) and label (column) from hourly grids; NaN where not valid."""
    m = np.ascontiguousarray(means, dtype=np.float64)
    v = np.ascontiguousarray(valid, dtype=np.bool_)
    if m.ndim != 2 or m.shape != v.shape:
        raise ValueError("means and valid must be 2-D grids of the same shape")
    p = nowcast_parameters()
    v = np.ascontiguousarray(v & ~np.isnan(m))
    return _k._nowcast(m, v, p.hours, p.recent_hours, p.min_recent_hours, p.min_weight)


def truncate(values: npt.ArrayLike, decimals: int) -> FloatArray:
    """EPA truncation to `decimals` places of values first rounded to 9 significant digits (CONTRACT.md section 4)."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    return _k._truncate(x.ravel(), decimals, index_rules().truncation_significant_digits).reshape(x.shape)


def _breakpoints(column: str) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    table = aqi_table()
    cells = table.breakpoints[column]
    lo = np.array([c[0] if c else np.nan for c in cells])
    hi = np.array([c[1] if c else np.nan for c in cells])
    i_lo = np.array([float(c.index_lo) for c in table.categories])
    i_hi = np.array([float(c.index_hi) for c in table.categories])
    return lo, hi, i_lo, i_hi


def index_of(column: str, concentration: npt.ArrayLike) -> FloatArray:
    """Unrounded AQI of truncated concentrations (in the column's unit) on one breakpoint column."""
    c = np.ascontiguousarray(concentration, dtype=np.float64)
    lo, hi, i_lo, i_hi = _breakpoints(column)
    raw = _k._banded_index(c.ravel(), lo, hi, i_lo, i_hi, float(aqi_table().max_index))
    return raw.reshape(c.shape)


def _round(values: FloatArray) -> FloatArray:
    return _k._round_half_up(values.ravel(), index_rules().rounding_epsilon).reshape(values.shape)


def _mean(means: FloatArray, valid: npt.NDArray[np.bool_], hours: int, min_valid: int) -> FloatArray:
    mean, _ = _k._rolling_valid_mean(means, valid, hours, min_valid)
    return mean


def _in_unit(pollutant: AqiPollutant, ug_m3: FloatArray) -> FloatArray:
    return truncate(ug_m3 / pollutant.ug_m3_per_unit, pollutant.decimals)


def sub_index(pollutant: str, means: npt.ArrayLike, valid: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(sub-index rounded half up, truncated concentration in the table's unit) per sensor and label; NaN: none."""
    spec = aqi_table().pollutants[pollutant]
    m = np.ascontiguousarray(means, dtype=np.float64)
    v = np.ascontiguousarray(np.asarray(valid, dtype=np.bool_) & ~np.isnan(m))
    if m.ndim != 2 or m.shape != v.shape:
        raise ValueError("means and valid must be 2-D grids of the same shape")
    if spec.method == "nowcast":
        conc = _in_unit(spec, nowcast(m, v))
    else:
        conc = _in_unit(spec, _mean(m, v, spec.hours, spec.min_valid_hours))
    raw = index_of(spec.column, conc)
    if spec.above_range_column is not None:
        top_bp = np.nanmax(_breakpoints(spec.column)[1])
        top_index = float(aqi_table().categories[int(np.nanargmax(_breakpoints(spec.column)[1]))].index_hi)
        latest = _in_unit(spec, np.where(v, m, np.nan))
        above = index_of(spec.above_range_column, latest)
        raw = np.where(conc > top_bp, np.where(np.isnan(above), top_index, above), raw)
    if spec.high_index_from is not None and spec.high_hours is not None and spec.high_min_valid_hours is not None:
        _, hi, _, i_hi = _breakpoints(spec.column)
        band_top = hi[i_hi == spec.high_index_from][0]
        long_conc = _in_unit(spec, _mean(m, v, spec.high_hours, spec.high_min_valid_hours))
        long_index = np.where(long_conc > band_top, index_of(spec.column, long_conc), float(spec.high_index_from))
        raw = np.where(conc > band_top, long_index, raw)
    return _round(raw), conc


@dataclass(frozen=True, slots=True)
class AqiGrid:
    """AQI per sensor (row) and label (column). Pollutant axes follow `aqi_table().pollutants`."""

    #: The AQI (a whole number), NaN when no pollutant has a sub-index.
    aqi: FloatArray
    #: Index of the dominant pollutant, -1 when there is no AQI.
    dominant: IntArray
    #: Per pollutant, sensor and label: the sub-index (NaN: none).
    sub_indices: FloatArray
    #: Per pollutant, sensor and label: the truncated concentration in the table's unit (NaN: none).
    concentrations: FloatArray


def aqi_grid(means: npt.ArrayLike, valid: npt.ArrayLike) -> AqiGrid:
    """AQI over hourly grids `means[p, s, j]` (ug/m3) and `valid[p, s, j]`, p in `aqi_table().pollutants` order."""
    table = aqi_table()
    m = np.asarray(means, dtype=np.float64)
    v = np.asarray(valid, dtype=np.bool_)
    if m.ndim != 3 or m.shape != v.shape or m.shape[0] != len(table.pollutants):
        raise ValueError(f"means and valid must have shape ({len(table.pollutants)}, sensors, hours)")
    sub = np.empty(m.shape, dtype=np.float64)
    conc = np.empty(m.shape, dtype=np.float64)
    for p, name in enumerate(table.pollutants):
        sub[p], conc[p] = sub_index(name, m[p], v[p])
    sub = np.minimum(sub, float(table.max_index))
    value, dominant = _k._largest(sub)
    return AqiGrid(
        aqi=value,
        dominant=dominant,
        sub_indices=sub,
        concentrations=conc,
    )


def category(aqi: int) -> AqiCategory:
    """The AQI category and its colour."""
    return aqi_table().category(aqi)


def warm_up() -> None:
    """Compile (or load from the cache) the kernels the AQI uses."""
    n = len(aqi_table().pollutants)
    aqi_grid(np.full((n, 1, 3), 10.0), np.ones((n, 1, 3), dtype=np.bool_))

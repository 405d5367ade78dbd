"""ISPU and US AQI of the stored readings, computed plainly from CONTRACT.md section 4 and the reference tables.

Only the constants (breakpoints, rules, averaging choices) come from `livinglab.reference`; every step is written
out here, one station and one label at a time.

- An hourly mean is valid when its hour holds at least 75 % of the readings `interval_s` implies.
- ISPU labelled H: per parameter, the mean of the valid hourly means of [H - 24 h, H), valid with 18 such hours;
  sub-index by the ISPU formula over contiguous bands from 0/0, rounded half up, capped at 500; the largest is the
  ISPU and names the critical parameter.
- AQI labelled H: PM2.5 and PM10 by NowCast over the 12 hours before H (valid with 2 of the latest 3), the others
  by their averaging period; concentrations truncated as EPA does, forgiving only binary floating-point error
  (written in decimal with 9 significant digits, then cut: 34.99999999999999 is 35.0, 34.9999999 is 34.9, as the
  contract says) and turned into an index with the 2024 breakpoints, rounded to the nearest integer; the largest
  names the dominant pollutant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from livinglab.domain import QUANTITIES
from livinglab.reference import AqiPollutant, aqi_table, index_rules, ispu_table, nowcast_parameters
from simulators.ledger import Series
from simulators.truth.aggregates import hourly_means

HOUR_S = 3600

#: Hour start -> (mean, count) per parameter of one station.
StationHours = Mapping[str, Mapping[int, tuple[float, int]]]


@dataclass(frozen=True, slots=True)
class IspuValue:
    """ISPU of one station, labelled `window_end_s` (the end of the last hour it includes)."""

    sensor_id: str
    window_end_s: int
    ispu: int | None
    category: str | None
    critical_parameter: str | None
    sub_indices: dict[str, int] = field(default_factory=dict)
    #: Per parameter, the valid hours among the 24.
    hours_valid: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AqiValue:
    """US AQI of one station for the hour ending `hour_s`."""

    sensor_id: str
    hour_s: int
    aqi: int | None
    category: str | None
    dominant_pollutant: str | None
    sub_indices: dict[str, int] = field(default_factory=dict)
    #: NowCast concentrations of PM2.5 and PM10 where valid, truncated as the AQI table reads them (ug/m3).
    nowcast: dict[str, float] = field(default_factory=dict)


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5 + index_rules().rounding_epsilon)


def truncate(value: float, decimals: int) -> float:
    """EPA truncation to `decimals` places of `value` written in decimal with 9 significant digits."""
    if not math.isfinite(value):
        return value
    written = Decimal(format(value, f".{index_rules().truncation_significant_digits}g"))
    return float(written.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR))


def station_hours(series: Mapping[tuple[str, str], Series], sensor_id: str) -> dict[str, dict[int, tuple[float, int]]]:
    return {quantity: hourly_means(s) for (sid, quantity), s in series.items() if sid == sensor_id}


def valid_means(hours: Mapping[int, tuple[float, int]], interval_s: int) -> dict[int, float]:
    """Hour start -> mean, for the hours holding at least 75 % of the readings the interval implies."""
    needed = index_rules().min_reading_fraction * HOUR_S / interval_s
    return {h: mean for h, (mean, count) in hours.items() if count >= needed - 1e-9}


def ispu_sub_index(parameter: str, concentration: float) -> int:
    table = ispu_table()
    tops = table.concentration_tops[parameter]
    indices = [float(c.top) for c in table.categories]
    low_x, low_i = 0.0, 0.0
    for top_x, top_i in zip(tops, indices, strict=True):
        if concentration <= top_x:
            value = (top_i - low_i) / (top_x - low_x) * (concentration - low_x) + low_i
            return min(round_half_up(value), table.max_index)
        low_x, low_i = top_x, top_i
    return table.max_index


def ispu_at(sensor_id: str, hours: StationHours, interval_s: int, label_s: int) -> IspuValue:
    """The ISPU of one station labelled `label_s`."""
    table = ispu_table()
    subs: dict[str, int] = {}
    counts: dict[str, int] = {}
    for parameter in table.parameters:
        if parameter not in hours:
            continue
        valid = valid_means(hours[parameter], interval_s)
        window = [valid[h] for h in range(label_s - table.hours * HOUR_S, label_s, HOUR_S) if h in valid]
        counts[parameter] = len(window)
        if len(window) >= table.min_valid_hours:
            subs[parameter] = ispu_sub_index(parameter, sum(window) / len(window))
    if not subs:
        return IspuValue(sensor_id, label_s, None, None, None, {}, counts)
    critical = max(subs, key=lambda p: (subs[p], -table.parameters.index(p)))
    value = subs[critical]
    return IspuValue(sensor_id, label_s, value, table.category(value).name, critical, subs, counts)


def nowcast(valid: Mapping[int, float], label_s: int) -> float | None:
    """EPA NowCast of the 12 hours before `label_s` (c1 the most recent), or None when not valid."""
    params = nowcast_parameters()
    c = {i: valid[label_s - i * HOUR_S] for i in range(1, params.hours + 1) if label_s - i * HOUR_S in valid}
    if sum(1 for i in range(1, params.recent_hours + 1) if i in c) < params.min_recent_hours:
        return None
    highest, lowest = max(c.values()), min(c.values())
    weight = 1.0 if highest == 0 else max(lowest / highest, params.min_weight)
    numerator = sum(weight ** (i - 1) * value for i, value in c.items())
    denominator = sum(weight ** (i - 1) for i in c)
    return numerator / denominator


def aqi_index(column: str, concentration: float) -> int | None:
    """The AQI of a truncated concentration on one breakpoint column; None where the table has no band for it."""
    table = aqi_table()
    bands = table.breakpoints[column]
    for category, band in zip(table.categories, bands, strict=True):
        if band is None:
            continue
        low, high = band
        if low <= concentration <= high + 1e-12:
            value = (category.index_hi - category.index_lo) / (high - low) * (concentration - low) + category.index_lo
            return min(round_half_up(value), table.max_index)
    defined = [b for b in bands if b is not None]
    if defined and concentration > defined[-1][1]:
        return table.max_index
    return None


def _mean_over(valid: Mapping[int, float], label_s: int, hours: int, minimum: int) -> float | None:
    window = [valid[h] for h in range(label_s - hours * HOUR_S, label_s, HOUR_S) if h in valid]
    return sum(window) / len(window) if len(window) >= minimum else None


def _pollutant_index(
    pollutant: AqiPollutant, valid: Mapping[int, float], label_s: int
) -> tuple[int | None, float | None]:
    """(index, NowCast) of one pollutant at a label."""
    scale = 1.0 if pollutant.unit == "ug/m3" else QUANTITIES[pollutant.name].units[pollutant.unit].scale
    if pollutant.method == "nowcast":
        value = nowcast(valid, label_s)
        if value is None:
            return None, None
        concentration = truncate(value / scale, pollutant.decimals)
        return aqi_index(pollutant.column, concentration), concentration
    mean = _mean_over(valid, label_s, pollutant.hours, pollutant.min_valid_hours)
    if mean is None:
        return None, None
    concentration = truncate(mean / scale, pollutant.decimals)
    index = aqi_index(pollutant.column, concentration)
    if pollutant.above_range_column and concentration > _top_concentration(pollutant.column):
        # Above the averaging table: the latest hour on the other table, or that table's top index below it.
        latest = _mean_over(valid, label_s, 1, 1)
        hourly = truncate(latest / scale, pollutant.decimals) if latest is not None else None
        above = aqi_index(pollutant.above_range_column, hourly) if hourly is not None else None
        index = above if above is not None else _top_index(pollutant.column)
    if pollutant.high_index_from is not None and index is not None and index > pollutant.high_index_from:
        assert pollutant.high_hours is not None
        assert pollutant.high_min_valid_hours is not None
        daily = _mean_over(valid, label_s, pollutant.high_hours, pollutant.high_min_valid_hours)
        high = aqi_index(pollutant.column, truncate(daily / scale, pollutant.decimals)) if daily is not None else None
        index = high if high is not None and high > pollutant.high_index_from else pollutant.high_index_from
    return index, None


def _top_concentration(column: str) -> float:
    return max(band[1] for band in aqi_table().breakpoints[column] if band is not None)


def _top_index(column: str) -> int:
    table = aqi_table()
    defined = [c.index_hi for c, b in zip(table.categories, table.breakpoints[column], strict=True) if b is not None]
    return max(defined)


def aqi_at(sensor_id: str, hours: StationHours, interval_s: int, label_s: int) -> AqiValue:
    """The US AQI of one station for the hour ending `label_s`."""
    table = aqi_table()
    subs: dict[str, int] = {}
    nowcasts: dict[str, float] = {}
    for name, pollutant in table.pollutants.items():
        if name not in hours:
            continue
        index, value = _pollutant_index(pollutant, valid_means(hours[name], interval_s), label_s)
        if value is not None:
            nowcasts[name] = value
        if index is not None:
            subs[name] = index
    if not subs:
        return AqiValue(sensor_id, label_s, None, None, None, {}, nowcasts)
    order = list(table.pollutants)
    dominant = max(subs, key=lambda p: (subs[p], -order.index(p)))
    value = subs[dominant]
    return AqiValue(sensor_id, label_s, value, table.category(value).name, dominant, subs, nowcasts)


def labels(hours: StationHours, reach_h: int) -> range:
    """Hour labels a station's data can affect: from the end of its first hour to `reach_h` after its last."""
    starts = [h for per_parameter in hours.values() for h in per_parameter]
    if not starts:
        return range(0)
    return range(min(starts) + HOUR_S, max(starts) + (reach_h + 1) * HOUR_S, HOUR_S)

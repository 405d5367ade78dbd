"""ISPU and US AQI rows of the labels a touched hour affects, recomputed from the stored hourly aggregates.

A reading in hour h changes the ISPU labelled h + 1 h .. h + 24 h and the AQI labelled h + 1 h .. h + 12 h (24 h
for the SO2 24-hour rule), so for each station this recomputes every label from (first touched hour + 1 h) to
(last touched hour + 24 h), from the `agg_1h` rows of the 24 hours before each label: one query loads them as a
dense grid (sensor x hour, per pollutant), the kernels compute both indices, and the rows are stored through
staging tables. A station has rows for a label when it reported any pollutant in the 24 hours before it; rows of
the range without data are deleted. Rows whose values did not change are not rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from livinglab.domain import QUANTITIES
from livinglab.reference import aqi_table, ispu_table
from processing import aqi, ispu
from processing._changes import Changes, store_and_summarize, upsert_changed
from processing._pgio import fetch_arrays, stage

HOUR_US = 3_600_000_000
#: How far back a label looks: the ISPU's 24 hours (the AQI needs at most as many).
LOOKBACK_HOURS = 24


def pollutants() -> tuple[str, ...]:
    """Every quantity either index reads, ISPU parameters first."""
    names = list(ispu_table().parameters)
    names += [p for p in aqi_table().pollutants if p not in names]
    return tuple(names)


_LOAD = """
SELECT coalesce(array_agg(sensor_key), '{}'), coalesce(array_agg(quantity), '{}'),
       coalesce(array_agg(window_start), '{}'), coalesce(array_agg(count), '{}'),
       coalesce(array_agg(coalesce(mean, 'NaN')), '{}')
FROM agg_1h
WHERE sensor_key = ANY(%(keys)s::int4[]) AND quantity = ANY(%(quantities)s::int2[])
  AND window_start >= %(start)s AND window_start < %(end)s
"""


@dataclass(frozen=True, slots=True)
class LabelRange:
    """Labels (hour boundaries, inclusive) to recompute for one station."""

    first: datetime
    last: datetime


def label_range(first_hour: datetime, last_hour: datetime) -> LabelRange:
    """The labels readings in hours first_hour .. last_hour (hour starts) can change."""
    return LabelRange(first_hour + timedelta(hours=1), last_hour + timedelta(hours=LOOKBACK_HOURS))


@dataclass(frozen=True, slots=True)
class HourlyGrid:
    """Hourly means and validity per pollutant (axis 0, `pollutants()` order), station (axis 1) and hour (axis 2)."""

    start_us: int
    keys: npt.NDArray[np.int64]
    means: npt.NDArray[np.float64]
    valid: npt.NDArray[np.bool_]
    has_data: npt.NDArray[np.bool_]


def load_grid(
    conn: psycopg.Connection[Any], ranges: Mapping[int, LabelRange], interval_s: Mapping[int, int]
) -> HourlyGrid:
    """The hourly aggregates every label of `ranges` needs, as a dense grid."""
    keys = np.array(sorted(ranges), dtype=np.int64)
    first = min(r.first for r in ranges.values()) - timedelta(hours=LOOKBACK_HOURS)
    last = max(r.last for r in ranges.values())
    start_us = round(first.timestamp()) * 1_000_000
    hours = round((last - first).total_seconds()) // 3600
    names = pollutants()
    codes = np.array([QUANTITIES[n].code for n in names], dtype=np.int64)
    key, quantity, window_start, count, mean = fetch_arrays(
        conn,
        _LOAD,
        {"keys": keys.tolist(), "quantities": codes.tolist(), "start": first, "end": last},
    )
    p = _index_of(codes, quantity)
    s = np.searchsorted(keys, key)
    h = (window_start - start_us) // HOUR_US
    shape = (len(names), keys.size, hours)
    means = np.full(shape, np.nan)
    counts = np.zeros(shape, dtype=np.int64)
    means[p, s, h] = mean
    counts[p, s, h] = count
    interval = np.array([interval_s[int(k)] for k in keys], dtype=np.float64)
    valid = ispu.valid_hours(counts, interval[None, :, None]) & (counts > 0)
    return HourlyGrid(start_us, keys, means, valid, counts > 0)


def _index_of(codes: npt.NDArray[np.int64], values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    order = np.argsort(codes)
    return order[np.searchsorted(codes[order], values)]


def _label_mask(grid: HourlyGrid, ranges: Mapping[int, LabelRange]) -> npt.NDArray[np.bool_]:
    """Labels to store: inside the station's range, with any pollutant reported in the 24 hours before."""
    hours = grid.means.shape[2]
    label_us = grid.start_us + (np.arange(hours, dtype=np.int64) + 1) * HOUR_US
    first = np.array([round(ranges[int(k)].first.timestamp()) * 1_000_000 for k in grid.keys], dtype=np.int64)
    last = np.array([round(ranges[int(k)].last.timestamp()) * 1_000_000 for k in grid.keys], dtype=np.int64)
    in_range = (label_us[None, :] >= first[:, None]) & (label_us[None, :] <= last[:, None])
    reported = np.cumsum(grid.has_data.any(axis=0), axis=1)
    window: npt.NDArray[np.int64] = reported - np.pad(reported, ((0, 0), (LOOKBACK_HOURS, 0)))[:, :hours]
    return in_range & (window > 0)


def _store_index(
    conn: psycopg.Connection[Any],
    upsert: sql.Composable,
    *,
    table: str,
    staging: str,
    label: str,
    values: tuple[str, ...],
    ranges: Mapping[int, LabelRange],
    params: dict[str, Any],
    items: int,
) -> Changes:
    """Upsert the staged rows of an hourly index table, delete the rows of the recomputed `ranges` that have no
    value any more, and summarize what changed (`values`: the columns a change-event item carries)."""
    keys = sorted(ranges)
    range_params = {"rk": keys, "rfirst": [ranges[k].first for k in keys], "rlast": [ranges[k].last for k in keys]}
    delete = sql.SQL(
        "DELETE FROM {table} t USING unnest(%(rk)s::int4[], %(rfirst)s::timestamptz[], %(rlast)s::timestamptz[])"
        " AS r(sensor_key, first, last)"
        " WHERE t.sensor_key = r.sensor_key AND t.{label} BETWEEN r.first AND r.last"
        " AND NOT EXISTS (SELECT 1 FROM {staging} x WHERE x.sensor_key = t.sensor_key AND x.{label} = t.{label})"
    ).format(table=sql.Identifier(table), label=sql.Identifier(label), staging=sql.Identifier(staging))
    return store_and_summarize(
        conn,
        upsert=upsert,
        delete=delete,
        label=label,
        values=values,
        period=sql.SQL("c.{} - interval '1 hour'").format(sql.Identifier(label)),
        params={**range_params, **params},
        items=items,
    )


def _nan_to_null(column: str) -> sql.Composed:
    return sql.SQL("nullif({}, 'NaN')").format(sql.Identifier(column))


def _index_columns(
    grid: HourlyGrid,
    ranges: Mapping[int, LabelRange],
    label: str,
    value: npt.NDArray[np.float64],
    which: npt.NDArray[np.int64],
    category_tops: list[int],
) -> tuple[npt.NDArray[np.bool_], list[tuple[str, Any, Any]]]:
    """The rows to store and their leading staging columns: key, label, value (-1: none), category and which
    parameter gave the value (-1: none), as indices into the reference tables."""
    mask = _label_mask(grid, ranges)
    s, j = np.nonzero(mask)
    index = np.where(np.isnan(value), -1, value)[mask].astype(np.int32)
    tops = np.asarray(category_tops)
    category = np.where(index >= 0, np.minimum(np.searchsorted(tops, index), tops.size - 1), -1)
    return mask, [
        ("sensor_key", "int4", grid.keys[s].astype(np.int32)),
        (label, "timestamptz", grid.start_us + (j.astype(np.int64) + 1) * HOUR_US),
        ("value", "int4", index),
        ("category", "int2", category.astype(np.int16)),
        ("which", "int2", which[mask].astype(np.int16)),
    ]


def store_ispu(
    conn: psycopg.Connection[Any], grid: HourlyGrid, ranges: Mapping[int, LabelRange], *, items: int
) -> Changes:
    """Compute the ISPU of every label in `ranges` and store the rows that changed."""
    table = ispu_table()
    names = pollutants()
    rows = [names.index(p) for p in table.parameters]
    result = ispu.ispu_grid(grid.means[rows], grid.valid[rows])
    mask, columns = _index_columns(
        grid, ranges, "window_end", result.ispu, result.critical, [c.top for c in table.categories]
    )
    columns.append(("hours_valid", "int4", result.reported_hours_valid[mask].astype(np.int32)))
    for p, name in enumerate(table.parameters):
        columns += [
            (f"si_{name}", "float8", result.sub_indices[p][mask]),
            (f"mean_{name}", "float8", result.mean_24h[p][mask]),
            (f"hours_{name}", "int4", result.hours_valid[p][mask].astype(np.int32)),
        ]
    stage(conn, "ispu_staging", columns)
    sub_indices = sql.SQL(", ").join(
        sql.SQL("{}, {}::int").format(sql.Literal(n), _nan_to_null(f"si_{n}")) for n in table.parameters
    )
    details = sql.SQL(", ").join(
        sql.SQL("{}, jsonb_strip_nulls(jsonb_build_object('mean_24h', {}, 'hours_valid', {}))").format(
            sql.Literal(n), _nan_to_null(f"mean_{n}"), sql.Identifier(f"hours_{n}")
        )
        for n in table.parameters
    )
    upsert = sql.SQL(
        upsert_changed(
            "ispu_hourly",
            ("sensor_key", "window_end"),
            ("ispu", "category", "colour_hex", "critical_parameter", "sub_indices", "hours_valid", "details"),
            "SELECT sensor_key, window_end, nullif(value, -1), (%(names)s::text[])[category + 1],"
            " (%(colours)s::text[])[category + 1], (%(parameters)s::text[])[which + 1],"
            " jsonb_strip_nulls(jsonb_build_object({sub_indices})), hours_valid, jsonb_build_object({details})"
            " FROM ispu_staging ORDER BY 1, 2",
        )
    ).format(sub_indices=sub_indices, details=details)
    return _store_index(
        conn,
        upsert,
        table="ispu_hourly",
        staging="ispu_staging",
        label="window_end",
        values=("ispu", "category", "critical_parameter"),
        ranges=ranges,
        params={
            "names": [c.name for c in table.categories],
            "colours": [c.colour_hex for c in table.categories],
            "parameters": list(table.parameters),
        },
        items=items,
    )


def store_aqi(
    conn: psycopg.Connection[Any], grid: HourlyGrid, ranges: Mapping[int, LabelRange], *, items: int
) -> Changes:
    """Compute the US AQI of every label in `ranges` and store the rows that changed."""
    table = aqi_table()
    names = pollutants()
    rows = [names.index(p) for p in table.pollutants]
    result = aqi.aqi_grid(grid.means[rows], grid.valid[rows])
    mask, columns = _index_columns(
        grid, ranges, "hour", result.aqi, result.dominant, [c.index_hi for c in table.categories]
    )
    for p, name in enumerate(table.pollutants):
        columns += [
            (f"si_{name}", "float8", result.sub_indices[p][mask]),
            (f"conc_{name}", "float8", result.concentrations[p][mask]),
        ]
    stage(conn, "aqi_staging", columns)
    sub_indices = sql.SQL(", ").join(
        sql.SQL("{}, {}::int").format(sql.Literal(n), _nan_to_null(f"si_{n}")) for n in table.pollutants
    )
    nowcast = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(n), _nan_to_null(f"conc_{n}"))
        for n, spec in table.pollutants.items()
        if spec.method == "nowcast"
    )
    upsert = sql.SQL(
        upsert_changed(
            "aqi_hourly",
            ("sensor_key", "hour"),
            ("aqi", "category", "dominant_pollutant", "nowcast", "sub_indices"),
            "SELECT sensor_key, hour, nullif(value, -1), (%(names)s::text[])[category + 1],"
            " (%(pollutants)s::text[])[which + 1], jsonb_strip_nulls(jsonb_build_object({nowcast})),"
            " jsonb_strip_nulls(jsonb_build_object({sub_indices})) FROM aqi_staging ORDER BY 1, 2",
        )
    ).format(nowcast=nowcast, sub_indices=sub_indices)
    return _store_index(
        conn,
        upsert,
        table="aqi_hourly",
        staging="aqi_staging",
        label="hour",
        values=("aqi", "category", "dominant_pollutant"),
        ranges=ranges,
        params={
            "names": [c.name for c in table.categories],
            "pollutants": list(table.pollutants),
        },
        items=items,
    )

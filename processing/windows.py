"""Aggregates of claimed windows of any width: raw readings as arrays -> kernels -> `agg_1m`/`agg_1h`/`agg_1d`.

`compute_windows` reads the raw readings of every claimed window in one query (one row of arrays, see
`processing._pgio`), runs the kernels and stages the results with a binary COPY; `store_windows` upserts them
(only rows whose values changed are written and reported) and deletes the aggregates of windows left without
readings. Hour and day aggregates come from the raw readings too, so their p50/p95 are exact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from livinglab.domain import QUANTITIES_BY_CODE, Window
from livinglab.events import EventType
from livinglab.precision import round_field
from processing._changes import Changes, publish_changes, upsert_changed
from processing._pgio import adapt_numpy, fetch_arrays, stage
from processing.aggregates import completeness, group_stats
from processing.claims import Claim

#: Readings of claimed windows (window i of the claim is `w.i`), in window then time order, plus each window's
#: sensor interval (0 when the sensor is gone). One statement, one row of arrays.
READ_WINDOWS = """
SELECT
    (SELECT coalesce(array_agg(coalesce(s.interval_s, 0) ORDER BY w.i), '{}')
     FROM unnest(%(key)s::int4[]) WITH ORDINALITY AS w(sensor_key, i) LEFT JOIN sensors s USING (sensor_key)),
    coalesce(array_agg(w.i), '{}'),
    coalesce(array_agg(r.value), '{}')
FROM unnest(%(key)s::int4[], %(quantity)s::int2[], %(start)s::timestamptz[], %(width)s::int4[])
    WITH ORDINALITY AS w(sensor_key, quantity, window_start, width_s, i)
CROSS JOIN LATERAL (
    SELECT r.value FROM readings r
    WHERE r.sensor_key = w.sensor_key AND r.quantity = w.quantity
      AND r.ts >= w.window_start AND r.ts < w.window_start + make_interval(secs => w.width_s)
      -- The claim's whole span as values: TimescaleDB excludes the other chunks once, not per window.
      AND r.ts >= %(span_start)s AND r.ts < %(span_end)s
    ORDER BY r.ts
) r
"""

#: Transaction-local (a caller outside a transaction gets a notice and JIT stays as configured).
_NO_JIT = "SET LOCAL jit = off"

_VALUES = ("count", "sum", "mean", "min", "max", "p50", "p95", "completeness")

_UPSERT = """
WITH upserted AS ({upsert} RETURNING t.*),
ranked AS (
    SELECT s.city, s.sensor_id, u.quantity, u.window_start, u.count, u.mean, u.min, u.max, u.p50, u.p95,
           u.completeness, count(*) OVER (PARTITION BY s.city) AS total,
           row_number() OVER (PARTITION BY s.city ORDER BY u.window_start DESC, s.sensor_id, u.quantity) AS rank
    FROM upserted u JOIN sensors s USING (sensor_key)
)
SELECT city, total, sensor_id, quantity, window_start, count, mean, min, max, p50, p95, completeness
FROM ranked WHERE rank <= %(items)s
ORDER BY city, rank
"""

_DELETE_EMPTY = """
DELETE FROM {table} a
USING unnest(%(key)s::int4[], %(quantity)s::int2[], %(start)s::timestamptz[]) AS e(sensor_key, quantity, window_start)
WHERE (a.sensor_key, a.quantity, a.window_start) = (e.sensor_key, e.quantity, e.window_start)
"""

_WINDOWS = {w.seconds: w for w in Window}


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _span(claim: Claim) -> dict[str, Any]:
    """The time span every claimed window lies in."""
    if not len(claim):
        epoch = datetime.fromtimestamp(0, UTC)
        return {"span_start": epoch, "span_end": epoch}
    start_us = int(claim.window_start_us.min())
    end_us = int((claim.window_start_us + claim.width_s.astype(np.int64) * 1_000_000).max())
    return {
        "span_start": datetime.fromtimestamp(start_us // 1_000_000, UTC),
        "span_end": datetime.fromtimestamp(-(-end_us // 1_000_000), UTC),
    }


def compute_windows(conn: psycopg.Connection[Any], claim: Claim) -> npt.NDArray[np.bool_]:
    """Read the claimed windows' readings, compute their aggregates and stage them in `agg_staging`.

    Returns, per claimed window, whether it holds readings (a window without readings has its aggregate deleted by
    `store_windows`). Windows of sensors no longer registered count as empty. Turns JIT off for the rest of the
    caller's transaction (the round's other statements are bounded the same way).
    """
    adapt_numpy(conn)
    # No JIT for the rest of the round's transaction. The planner's estimate of READ_WINDOWS grows with the readings
    # table (rows per probe), while the work does not (one index range per window): past a few million readings
    # the estimate crosses jit_optimize_above_cost and compiling took 0.4 s of a 0.5 s statement, which made the
    # same hour cost twice as much at 10 M readings as at 1 M (docs/operations.md, Sizing).
    conn.execute(_NO_JIT)
    interval_s, window, values = fetch_arrays(conn, READ_WINDOWS, {**claim.params(), **_span(claim)})
    index = window - 1  # ordinality is 1-based
    if index.size > 1 and bool(np.any(index[1:] < index[:-1])):
        # The readings arrive grouped by window; keep that guarantee even if a plan ever changes the order.
        order = np.argsort(index, kind="stable")
        index, values = index[order], values[order]
    stats = group_stats(index, values)
    present = index[stats.starts]
    width_s = claim.width_s.astype(np.int64)
    interval = interval_s.astype(np.int64)
    known = interval > 0
    keep = known[present]
    rows = present[keep]
    stage(
        conn,
        "agg_staging",
        [
            ("sensor_key", "int4", claim.sensor_key[rows]),
            ("quantity", "int2", claim.quantity[rows]),
            ("width_s", "int4", claim.width_s[rows]),
            ("window_start", "timestamptz", claim.window_start_us[rows]),
            ("count", "int8", stats.count[keep]),
            ("sum", "float8", stats.sum[keep]),
            ("mean", "float8", stats.mean[keep]),
            ("min", "float8", stats.min[keep]),
            ("max", "float8", stats.max[keep]),
            ("p50", "float8", stats.p50[keep]),
            ("p95", "float8", stats.p95[keep]),
            ("completeness", "float8", completeness(stats.count[keep], interval[rows], width_s[rows])),
        ],
    )
    has_readings = np.zeros(len(claim), dtype=np.bool_)
    has_readings[rows] = True
    return has_readings


def store_windows(
    conn: psycopg.Connection[Any], claim: Claim, has_readings: npt.NDArray[np.bool_], *, items: int
) -> dict[int, Changes]:
    """Upsert the staged aggregates of each width and delete those of empty windows.

    Returns, per width in seconds, the aggregates that changed: per city, how many and up to `items` of them as
    event items.
    """
    changed: dict[int, Changes] = {}
    for width in sorted({int(w) for w in claim.width_s}):
        table = _WINDOWS[width].table
        empty = ~has_readings & (claim.width_s == width)
        if empty.any():
            conn.execute(_DELETE_EMPTY.format(table=table), claim.take(empty).params())
        upsert = upsert_changed(
            table,
            ("sensor_key", "quantity", "window_start"),
            _VALUES,
            f"SELECT sensor_key, quantity, window_start, {', '.join(_VALUES)} FROM agg_staging"
            " WHERE width_s = %(width)s ORDER BY 1, 2, 3",
        )
        changes = Changes()
        for row in conn.execute(_UPSERT.format(upsert=upsert), {"width": width, "items": items}):
            city, total = row[0], int(row[1])
            changes.total[city] = total
            changes.items.setdefault(city, []).append(_item(row[2:]))
        changed[width] = changes
    return changed


def _item(row: tuple[Any, ...]) -> dict[str, Any]:
    sensor_id, code, window_start, count, mean, vmin, vmax, p50, p95, complete = row
    quantity = QUANTITIES_BY_CODE[code].name
    # As the API serves them (livinglab.precision): min and max are readings, served as stored.
    return {
        "sensor_id": sensor_id,
        "quantity": quantity,
        "window_start": _iso(window_start),
        "count": count,
        "mean": round_field("mean", mean, quantity=quantity),
        "min": vmin,
        "max": vmax,
        "p50": round_field("p50", p50, quantity=quantity),
        "p95": round_field("p95", p95, quantity=quantity),
        "completeness": round_field("completeness", complete),
    }


def publish_aggregates(conn: psycopg.Connection[Any], changed: dict[int, Changes]) -> None:
    """One `aggregates` event per window width and city that changed."""
    for width, changes in changed.items():
        publish_changes(conn, EventType.AGGREGATES, changes, window=_WINDOWS[width].value)

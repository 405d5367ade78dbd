"""Traffic rows (`traffic_hourly`) of touched counter-hours, recomputed from the stored hourly aggregates.

Per counter and UTC hour: the sums of `sm`, `kr` and `kb` in the hour, the mean of `speed`, and completeness (the
mean of the three count classes' hourly completeness), then `processing.traffic` for PCU flow, capacity, DJ and
LOS. An hour without any count reading has no row (an existing one is deleted). Counters whose registry entry lacks
the road attributes are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from livinglab.domain import QUANTITIES
from livinglab.reference import pkji_tables
from processing import traffic
from processing._changes import Changes, store_and_summarize, upsert_changed
from processing._pgio import fetch_arrays, stage
from processing.sensors import SensorInfo

_CLASSES = ("sm", "kr", "kb")

_LOAD = """
SELECT coalesce(array_agg(t.i), '{}'), coalesce(array_agg(a.quantity), '{}'), coalesce(array_agg(a.sum), '{}'),
       coalesce(array_agg(coalesce(a.mean, 'NaN')), '{}'), coalesce(array_agg(coalesce(a.completeness, 0)), '{}')
FROM unnest(%(keys)s::int4[], %(hours)s::timestamptz[]) WITH ORDINALITY AS t(sensor_key, hour, i)
JOIN agg_1h a ON a.sensor_key = t.sensor_key AND a.window_start = t.hour AND a.quantity = ANY(%(quantities)s::int2[])
"""

_DELETE = """
DELETE FROM traffic_hourly t USING unnest(%(keys)s::int4[], %(hours)s::timestamptz[]) AS r(sensor_key, hour)
WHERE t.sensor_key = r.sensor_key AND t.hour = r.hour
  AND NOT EXISTS (SELECT 1 FROM traffic_staging x WHERE x.sensor_key = t.sensor_key AND x.hour = t.hour)
"""

_UPSERT = upsert_changed(
    "traffic_hourly",
    ("sensor_key", "hour"),
    (
        "flow_veh_h",
        "flow_pcu_h",
        "capacity_pcu_h",
        "degree_of_saturation",
        "los",
        "los_target",
        "los_met",
        "mean_speed_kmh",
        "completeness",
    ),
    "SELECT sensor_key, hour, flow_veh_h, flow_pcu_h, capacity_pcu_h, degree_of_saturation,"
    " (%(letters)s::text[])[los + 1], (%(letters)s::text[])[los_target + 1], los_met = 1,"
    " nullif(mean_speed_kmh, 'NaN'), completeness FROM traffic_staging ORDER BY 1, 2",
)


def store_traffic(
    conn: psycopg.Connection[Any],
    touched: Mapping[int, list[datetime]],
    sensors: Mapping[int, SensorInfo],
    *,
    items: int,
) -> Changes:
    """Recompute and store the traffic rows of the touched (counter, hour) pairs; report what changed."""
    pairs = [(k, h) for k in sorted(touched) if sensors[k].road is not None for h in sorted(set(touched[k]))]
    if not pairs:
        return Changes()
    keys = [k for k, _ in pairs]
    hours = [h for _, h in pairs]
    names = (*_CLASSES, "speed")
    codes = [QUANTITIES[n].code for n in names]
    row, quantity, total, mean, complete = fetch_arrays(
        conn, _LOAD, {"keys": keys, "hours": hours, "quantities": codes}
    )
    index = row - 1
    per_class = {n: np.zeros(len(pairs)) for n in _CLASSES}
    present = np.zeros(len(pairs), dtype=np.bool_)
    completeness = np.zeros(len(pairs))
    speed = np.full(len(pairs), np.nan)
    for name in _CLASSES:
        hit = quantity == QUANTITIES[name].code
        per_class[name][index[hit]] = total[hit]
        present[index[hit]] = True
        completeness[index[hit]] += complete[hit] / len(_CLASSES)
    hit = quantity == QUANTITIES["speed"].code
    speed[index[hit]] = mean[hit]

    tables = pkji_tables()
    letters = [*tables.los_letters, tables.los_above]
    key_array = np.asarray(keys)
    out = {c: np.zeros(len(pairs)) for c in ("flow", "pcu", "capacity", "dj")}
    los = np.zeros(len(pairs), dtype=np.int16)
    target = np.zeros(len(pairs), dtype=np.int16)
    met = np.zeros(len(pairs), dtype=np.int16)
    for key in sorted(set(keys)):
        road = sensors[key].road
        assert road is not None
        rows = np.flatnonzero(key_array == key)
        result = traffic.traffic_hours(road, per_class["sm"][rows], per_class["kr"][rows], per_class["kb"][rows])
        out["flow"][rows] = result.flow_veh_h
        out["pcu"][rows] = result.flow_pcu_h
        out["capacity"][rows] = result.capacity_pcu_h
        out["dj"][rows] = result.degree_of_saturation
        los[rows] = result.los_rank
        target[rows] = tables.los_rank(result.los_target)
        met[rows] = result.los_met
    keep = np.flatnonzero(present)
    stage(
        conn,
        "traffic_staging",
        [
            ("sensor_key", "int4", key_array[keep].astype(np.int32)),
            ("hour", "timestamptz", np.array([round(hours[i].timestamp()) * 1_000_000 for i in keep], np.int64)),
            ("flow_veh_h", "float8", out["flow"][keep]),
            ("flow_pcu_h", "float8", out["pcu"][keep]),
            ("capacity_pcu_h", "float8", out["capacity"][keep]),
            ("degree_of_saturation", "float8", out["dj"][keep]),
            ("los", "int2", los[keep]),
            ("los_target", "int2", target[keep]),
            ("los_met", "int2", met[keep]),
            ("mean_speed_kmh", "float8", speed[keep]),
            ("completeness", "float8", completeness[keep]),
        ],
    )
    return store_and_summarize(
        conn,
        upsert=sql.SQL(_UPSERT),
        delete=sql.SQL(_DELETE),
        label="hour",
        values=("degree_of_saturation", "los", "los_target"),
        period=sql.SQL("c.hour"),
        params={"keys": keys, "hours": hours, "letters": letters},
        items=items,
    )

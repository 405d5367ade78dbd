"""A small two-city network written the way the ingester writes, and an oracle for what the processors made of it.

`CityLoad` registers air stations and traffic counters in two cities and, in a thread, writes a reading of every
series per tick on a fast data clock (each tick is `step_s` of data time, in the past), now and then a late reading
for an earlier minute, and marks the touched minutes dirty in the same transaction, like the ingester. Processors
therefore always have minutes, hours, days, indices and service levels to compute, and write events of both cities.

The oracle: `snapshot` reads every result table (computation times left out); `recompute` computes everything again
from the same readings in a clean run (one processor, nothing else running) and snapshots that; `differing` counts
the rows one snapshot has and the other does not.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from livinglab.domain import QUANTITIES
from processing import ProcessorSettings, process_until_idle
from tests.support.roles import Background, rows
from tests.support.sensors import air, register, traffic

_AGGREGATE = "SELECT sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95, completeness FROM "

#: Every table the processors fill from readings (service levels, which follow the wall clock, left out).
RESULTS = {
    "agg_1m": _AGGREGATE + "agg_1m",
    "agg_1h": _AGGREGATE + "agg_1h",
    "agg_1d": _AGGREGATE + "agg_1d",
    "ispu_hourly": "SELECT sensor_key, window_end, ispu, category, colour_hex, critical_parameter,"
    " sub_indices::text, hours_valid, details::text FROM ispu_hourly",
    "aqi_hourly": "SELECT sensor_key, hour, aqi, category, dominant_pollutant, nowcast::text, sub_indices::text"
    " FROM aqi_hourly",
    "traffic_hourly": "SELECT sensor_key, hour, flow_veh_h, flow_pcu_h, capacity_pcu_h, degree_of_saturation, los,"
    " los_target, los_met, mean_speed_kmh, completeness FROM traffic_hourly",
}

AIR = ("pm25", "pm10", "o3")
TRAFFIC = ("sm", "kr", "kb", "speed")
CITIES = {"jakarta": ("Menteng", "Gambir"), "bandung": ("Coblong", "Sukajadi")}

#: After a CTE `inserted` returning (sensor_key, quantity, ts) of new readings: their minutes marked (or re-marked,
#: bumping `version`) dirty, as the ingester does.
MARK_INSERTED_DIRTY = """
INSERT INTO dirty_windows (sensor_key, quantity, window_start)
SELECT DISTINCT sensor_key, quantity, date_trunc('minute', ts) FROM inserted ORDER BY 1, 2, 3
ON CONFLICT (sensor_key, quantity, window_start)
DO UPDATE SET version = dirty_windows.version + 1, marked_at = now()
"""

_INSERT = (
    """
WITH r AS (
    SELECT * FROM unnest(%(key)s::int4[], %(quantity)s::int2[], %(ts)s::timestamptz[], %(value)s::float8[])
        AS r(sensor_key, quantity, ts, value)
), inserted AS (
    INSERT INTO readings (sensor_key, quantity, ts, value, received_at)
    SELECT sensor_key, quantity, ts, value, now() FROM r ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING sensor_key, quantity, ts
)"""
    + MARK_INSERTED_DIRTY
)


def register_city(url: str, stations_per_district: int = 1) -> list[tuple[int, str]]:
    """Air stations and a traffic counter per district of both cities; returns (sensor_key, kind) per sensor."""
    specs = [
        spec
        for city, districts in CITIES.items()
        for district in districts
        for spec in (
            *(air(f"aq-{district.lower()}-{i}", city, district, interval_s=60) for i in range(stations_per_district)),
            traffic(f"tc-{district.lower()}", city, district, interval_s=60),
        )
    ]
    keys = register(url, specs)
    return [(keys[spec.sensor_id], spec.kind.value) for spec in specs]


class CityLoad(Background):
    """Writes the network's readings in a thread from `start()` until `stop()` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        sensors: list[tuple[int, str]],
        *,
        start: datetime | None = None,
        step_s: float = 60.0,
        tick_s: float = 0.2,
        late_every: int = 7,
        seed: int = 20261128,
    ) -> None:
        super().__init__("city-load")
        self.url = url
        self.step_s = step_s
        self.tick_s = tick_s
        self.late_every = late_every
        self.series = [(key, QUANTITIES[q].code) for key, kind in sensors for q in (AIR if kind == "air" else TRAFFIC)]
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.data_time = (start or now - timedelta(hours=6)).timestamp()
        self.ticks = 0
        self.readings = 0
        self._rng = np.random.default_rng(seed)

    def write_tick(self, conn: psycopg.Connection[Any]) -> None:
        """One tick's readings (and now and then a late one), in one transaction."""
        times = [self.data_time]
        if self.late_every and self.ticks % self.late_every == self.late_every - 1:
            times.append(self.data_time - 600 - 30)  # half a minute into a window ten minutes back
        key = [k for k, _ in self.series for _ in times]
        quantity = [q for _, q in self.series for _ in times]
        ts = [datetime.fromtimestamp(t, UTC) for _ in self.series for t in times]
        values = np.round(self._rng.gamma(3.0, 12.0, len(key)), 1).tolist()
        with conn.transaction():
            conn.execute(_INSERT, {"key": key, "quantity": quantity, "ts": ts, "value": values})
            conn.execute("NOTIFY livinglab_dirty")
        self.readings += len(key)
        self.ticks += 1
        self.data_time += self.step_s

    def loop(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            next_at = time.monotonic()
            while not self.stopping.is_set():
                if self.data_time > time.time() - 120:
                    self.stopping.wait(self.tick_s)  # never past the present
                    continue
                self.write_tick(conn)
                next_at += self.tick_s
                self.stopping.wait(max(0.0, next_at - time.monotonic()))


def backlog_since(url: str, since: datetime) -> int:
    """Windows queued at or before `since` that are still waiting (minutes, and hours and days already due)."""
    query = (
        "SELECT (SELECT count(*) FROM dirty_windows WHERE marked_at <= %(t)s)"
        " + (SELECT count(*) FROM dirty_rollups WHERE due_at <= %(t)s)"
    )
    return int(rows(url, query, {"t": since})[0][0])


def database_now(url: str) -> datetime:
    now: datetime = rows(url, "SELECT now()")[0][0]
    return now


def idle(url: str) -> bool:
    return rows(url, "SELECT (SELECT count(*) FROM dirty_windows) + (SELECT count(*) FROM dirty_rollups)") == [(0,)]


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted(rows(url, query)) for table, query in RESULTS.items()}


def recompute(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every result again from the stored readings by one processor with nothing else running; its snapshot."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "TRUNCATE agg_1m, agg_1h, agg_1d, ispu_hourly, aqi_hourly, traffic_hourly, completeness_hourly,"
            " dirty_windows, dirty_rollups"
        )
        conn.execute(
            "INSERT INTO dirty_windows (sensor_key, quantity, window_start)"
            " SELECT DISTINCT sensor_key, quantity, date_trunc('minute', ts) FROM readings"
        )
        conn.commit()
        settings = ProcessorSettings(
            database_url=url, worker_id="clean-run", hour_rollup_delay_s=0, day_rollup_delay_s=0
        )
        process_until_idle(conn, settings)
    return snapshot(url)


def differing(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> int:
    """Rows in one snapshot and not in the other, over every table."""
    return sum(len(set(a[t]) ^ set(b[t])) for t in RESULTS)


def result_rows(result: dict[str, list[tuple[Any, ...]]], tables: Iterable[str] = RESULTS) -> int:
    return sum(len(result[t]) for t in tables)

"""One round of each kind of work. Each round commits in one transaction, with its change events.

- minute round: claimed dirty minutes -> `agg_1m`, their hours and days queued as rollups;
- rollup round: claimed hours and days -> `agg_1h`/`agg_1d` from the raw readings, then for the hours the ISPU and
  AQI labels they affect, the traffic rows, and the service levels of the completed hours they touch;
- tally round: the service-level clock for hours that just ended.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from livinglab.domain import QUANTITIES_BY_CODE, Kind
from livinglab.events import MAX_ITEMS, EventType
from processing import claims, hourly_air, hourly_traffic, service_levels
from processing._changes import ISO_UTC, Changes, publish_changes
from processing.claims import Claim
from processing.leases import LeaseKeeper
from processing.sensors import load_sensors
from processing.settings import ProcessorSettings
from processing.windows import compute_windows, publish_aggregates, store_windows

HOUR = timedelta(hours=1)


def _holding(keeper: LeaseKeeper | None, claim: Claim, *, rollups: bool) -> AbstractContextManager[None]:
    return keeper.hold(claim, rollups=rollups) if keeper is not None else contextlib.nullcontext()


def minute_round(conn: psycopg.Connection[Any], settings: ProcessorSettings, keeper: LeaseKeeper | None = None) -> int:
    """Compute one batch of dirty minutes (with `keeper` renewing their lease meanwhile). Returns the number of
    windows processed."""
    claim = claims.claim_windows(
        conn, worker=settings.worker_id, limit=settings.claim_batch, lease_s=settings.claim_lease_s
    )
    if not claim:
        return 0
    with _holding(keeper, claim, rollups=False), conn.transaction():
        has_readings = compute_windows(conn, claim)
        publish_aggregates(conn, store_windows(conn, claim, has_readings, items=MAX_ITEMS))
        claims.mark_rollups(
            conn, claim, hour_delay_s=settings.hour_rollup_delay_s, day_delay_s=settings.day_rollup_delay_s
        )
        claims.release_windows(conn, claim, worker=settings.worker_id)
    return len(claim)


def rollup_round(
    conn: psycopg.Connection[Any],
    settings: ProcessorSettings,
    keeper: LeaseKeeper | None = None,
    *,
    due_only: bool = True,
) -> int:
    """Compute one batch of due hours and days (any queued, with `due_only=False`) and everything derived from the
    hours (with `keeper` renewing their lease meanwhile). Returns windows processed."""
    claim = claims.claim_rollups(
        conn,
        worker=settings.worker_id,
        limit=settings.rollup_batch,
        lease_s=settings.claim_lease_s,
        due_only=due_only,
    )
    if not claim:
        return 0
    with _holding(keeper, claim, rollups=True), conn.transaction():
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now: datetime = row[0]
        # Indices read the hours of other quantities of the same sensor: one processor per sensor at a time.
        service_levels.lock_sensors(conn, claim.sensor_key.tolist())
        has_readings = compute_windows(conn, claim)
        publish_aggregates(conn, store_windows(conn, claim, has_readings, items=MAX_ITEMS))

        touched: dict[int, set[datetime]] = defaultdict(set)
        pollutant_hours: dict[int, list[datetime]] = defaultdict(list)
        pollutants = set(hourly_air.pollutants())
        hourly = claim.take(claim.width_s == 3600)
        for key, quantity, start_us in zip(
            hourly.sensor_key.tolist(), hourly.quantity.tolist(), hourly.window_start_us.tolist(), strict=True
        ):
            start = datetime.fromtimestamp(start_us // 1_000_000, UTC)
            touched[key].add(start)
            if QUANTITIES_BY_CODE[quantity].name in pollutants:
                pollutant_hours[key].append(start)
        sensors = load_sensors(conn, touched)
        periods = {
            (sensors[k].city, sensors[k].district, h)
            for k in touched
            if k in sensors
            for h in touched[k]
            if h + HOUR <= now
        }

        ranges = {
            k: hourly_air.label_range(min(hours), max(hours))
            for k, hours in pollutant_hours.items()
            if k in sensors and sensors[k].kind is Kind.AIR
        }
        if ranges:
            grid = hourly_air.load_grid(conn, ranges, {k: sensors[k].interval_s for k in ranges})
            ispu = hourly_air.store_ispu(conn, grid, ranges, items=MAX_ITEMS)
            publish_changes(conn, EventType.ISPU, ispu)
            publish_changes(conn, EventType.AQI, hourly_air.store_aqi(conn, grid, ranges, items=MAX_ITEMS))
            periods |= ispu.periods
        traffic_hours = {
            k: sorted(hours) for k, hours in touched.items() if k in sensors and sensors[k].kind is Kind.TRAFFIC
        }
        if traffic_hours:
            traffic = hourly_traffic.store_traffic(conn, traffic_hours, sensors, items=MAX_ITEMS)
            publish_changes(conn, EventType.TRAFFIC, traffic)
            periods |= traffic.periods
        publish_changes(conn, EventType.SERVICE_LEVELS, service_levels.tally_periods(conn, periods))
        claims.release_rollups(
            conn,
            claim,
            worker=settings.worker_id,
            hour_delay_s=settings.hour_rollup_delay_s,
            day_delay_s=settings.day_rollup_delay_s,
        )
    return len(claim)


_CURRENT_ISPU = f"""
SELECT city, item FROM (
    SELECT s.city, json_build_object('sensor_id', s.sensor_id, 'window_end', {ISO_UTC.format("i.window_end")},
                                     'ispu', i.ispu, 'category', i.category,
                                     'critical_parameter', i.critical_parameter) AS item,
           row_number() OVER (PARTITION BY s.city ORDER BY i.window_end DESC, s.sensor_id) AS rank
    FROM ispu_hourly i JOIN sensors s USING (sensor_key)
    WHERE i.window_end = ANY(%(labels)s::timestamptz[])
) x WHERE rank <= %(limit)s ORDER BY city, rank
"""

_CURRENT_AQI = f"""
SELECT city, item FROM (
    SELECT s.city, json_build_object('sensor_id', s.sensor_id, 'hour', {ISO_UTC.format("a.hour")}, 'aqi', a.aqi,
                                     'category', a.category, 'dominant_pollutant', a.dominant_pollutant) AS item,
           row_number() OVER (PARTITION BY s.city ORDER BY a.hour DESC, s.sensor_id) AS rank
    FROM aqi_hourly a JOIN sensors s USING (sensor_key)
    WHERE a.hour = ANY(%(labels)s::timestamptz[])
) x WHERE rank <= %(limit)s ORDER BY city, rank
"""


def tally_round(conn: psycopg.Connection[Any]) -> int:
    """Tally the service levels of hours that ended since the last tally, and announce the index values that
    became current with them (labels are served once their hour has ended). Returns the hours tallied."""
    with conn.transaction():
        hours, changes = service_levels.tally_completed_hours(conn)
        if not hours:
            return 0
        publish_changes(conn, EventType.SERVICE_LEVELS, changes)
        labels = {"labels": [h + HOUR for h in hours], "limit": MAX_ITEMS + 1}
        for type_, query in ((EventType.ISPU, _CURRENT_ISPU), (EventType.AQI, _CURRENT_AQI)):
            # MAX_ITEMS + 1 per city: one more than an event carries tells that it is truncated.
            rows = conn.execute(query, labels).fetchall()
            publish_changes(conn, type_, Changes.of_items(rows, limit=MAX_ITEMS))
    return len(hours)

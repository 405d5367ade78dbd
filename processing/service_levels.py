"""Service levels per district and completed UTC hour (`service_hourly`), rolled up per UTC day (`service_daily`).

For a (city, district, hour) period, with achieved = numerator / denominator (CONTRACT.md section 4):
- `data`: received / expected readings, from `completeness_hourly`, which this module fills for every sensor of
  the district: a quantity is expected from a sensor in an hour when the sensor reported it at least once in the
  7 days up to and including that hour (so a sensor counts from its first reading until a week of silence), at
  3600 / interval_s readings; received readings count at most the expected number per quantity;
- `air`: station-hours (ISPU labelled by the hour's end) with ISPU <= 100 / station-hours with a valid ISPU;
- `traffic`: counter-hours whose LOS meets the road function's minimum / counter-hours with a traffic row.
A service without any station, counter or expected reading in the period has no row. Only completed hours are
tallied; the clock (`tally_completed_hours`) tallies every district once its hour is over, so districts that sent
nothing still get their `data` rows. Day rows sum the hours of the day, so a 30-day query reads 30 rows.

Concurrent processors serialize per district with transaction-scoped advisory locks, taken in a fixed order after
any sensor locks, so each tally sees every committed index row of the district.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from livinglab.events import MAX_ITEMS
from processing._changes import Changes, upsert_changed

#: Advisory-lock namespace (first key) for districts; the second key is hashtext(city/district).
DISTRICT_LOCK = 0x4C4C5044
#: Advisory-lock namespace for sensors; the second key is the sensor key.
SENSOR_LOCK = 0x4C4C5053
#: A quantity is expected from a sensor while it reported it within this span.
EXPECTED_LOOKBACK = "7 days"

_SERVICE_KEY = ("city", "district", "service", "period_start")

_TARGETS = """
targets AS (
    SELECT DISTINCT city, district, hour
    FROM unnest(%(cities)s::text[], %(districts)s::text[], %(hours)s::timestamptz[]) AS t(city, district, hour)
)"""

_COMPLETENESS = f"""
WITH {_TARGETS},
expected AS (
    SELECT s.sensor_key, t.hour, q.code AS quantity, 3600.0 / s.interval_s AS expected
    FROM targets t JOIN sensors s USING (city, district) JOIN quantities q ON q.kind = s.kind
    WHERE EXISTS (SELECT 1 FROM agg_1h a WHERE a.sensor_key = s.sensor_key AND a.quantity = q.code
                  AND a.window_start > t.hour - interval '{EXPECTED_LOOKBACK}' AND a.window_start <= t.hour)
), computed AS (
    SELECT e.sensor_key, e.hour, sum(least(coalesce(a.count, 0), e.expected)) AS received,
           sum(e.expected) AS expected
    FROM expected e
    LEFT JOIN agg_1h a ON a.sensor_key = e.sensor_key AND a.quantity = e.quantity AND a.window_start = e.hour
    GROUP BY 1, 2
), upserted AS (
    {
    upsert_changed(
        "completeness_hourly",
        ("sensor_key", "hour"),
        ("received", "expected"),
        "SELECT sensor_key, hour, received, expected FROM computed ORDER BY 1, 2",
    )
}
    RETURNING 1
)
DELETE FROM completeness_hourly c USING targets t, sensors s
WHERE s.city = t.city AND s.district = t.district AND c.sensor_key = s.sensor_key AND c.hour = t.hour
  AND NOT EXISTS (SELECT 1 FROM computed x WHERE x.sensor_key = c.sensor_key AND x.hour = c.hour)
"""

_HOURLY = f"""
WITH {_TARGETS},
tallies AS (
    SELECT t.city, t.district, 'data' AS service, t.hour, sum(c.received) AS numerator,
           sum(c.expected) AS denominator
    FROM targets t JOIN sensors s USING (city, district)
    JOIN completeness_hourly c ON c.sensor_key = s.sensor_key AND c.hour = t.hour
    GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT t.city, t.district, 'air', t.hour, count(*) FILTER (WHERE i.ispu <= 100), count(*)
    FROM targets t JOIN sensors s USING (city, district)
    JOIN ispu_hourly i ON i.sensor_key = s.sensor_key AND i.window_end = t.hour + interval '1 hour'
    WHERE i.ispu IS NOT NULL
    GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT t.city, t.district, 'traffic', t.hour, count(*) FILTER (WHERE x.los_met), count(*)
    FROM targets t JOIN sensors s USING (city, district)
    JOIN traffic_hourly x ON x.sensor_key = s.sensor_key AND x.hour = t.hour
    GROUP BY 1, 2, 3, 4
), upserted AS (
    {
    upsert_changed(
        "service_hourly",
        _SERVICE_KEY,
        ("numerator", "denominator"),
        "SELECT * FROM tallies WHERE denominator > 0 ORDER BY 1, 2, 3, 4",
    )
}
    RETURNING t.city, t.district, t.service, t.period_start, t.numerator, t.denominator
), deleted AS (
    DELETE FROM service_hourly h USING targets t
    WHERE h.city = t.city AND h.district = t.district AND h.period_start = t.hour
      AND NOT EXISTS (SELECT 1 FROM tallies x WHERE x.denominator > 0 AND x.city = h.city
                      AND x.district = h.district AND x.service = h.service AND x.hour = h.period_start)
    RETURNING h.city, h.district, h.service, h.period_start, NULL::float8 AS numerator, NULL::float8 AS denominator
), changed AS (SELECT * FROM upserted UNION ALL SELECT * FROM deleted)
SELECT city, district, service, period_start, numerator, denominator FROM changed
ORDER BY period_start DESC, city, district, service
"""

_DAILY = f"""
WITH {_TARGETS},
days AS (SELECT DISTINCT city, district, date_bin('1 day', hour, 'epoch'::timestamptz) AS day FROM targets),
sums AS (
    SELECT d.city, d.district, h.service, d.day, sum(h.numerator) AS numerator, sum(h.denominator) AS denominator
    FROM days d JOIN service_hourly h ON h.city = d.city AND h.district = d.district
        AND h.period_start >= d.day AND h.period_start < d.day + interval '1 day'
    GROUP BY 1, 2, 3, 4
), upserted AS (
    {
    upsert_changed(
        "service_daily", _SERVICE_KEY, ("numerator", "denominator"), "SELECT * FROM sums ORDER BY 1, 2, 3, 4"
    )
}
    RETURNING 1
)
DELETE FROM service_daily y USING days d
WHERE y.city = d.city AND y.district = d.district AND y.period_start = d.day
  AND NOT EXISTS (SELECT 1 FROM sums x WHERE x.city = y.city AND x.district = y.district
                  AND x.service = y.service AND x.day = y.period_start)
"""

_LOCK_SENSORS = """
SELECT pg_advisory_xact_lock(%(ns)s, k) FROM (SELECT DISTINCT k FROM unnest(%(keys)s::int4[]) AS k ORDER BY k) s
"""

_LOCK_DISTRICTS = """
SELECT pg_advisory_xact_lock(%(ns)s, h) FROM (
    SELECT DISTINCT hashtext(c || '/' || d) AS h FROM unnest(%(cities)s::text[], %(districts)s::text[]) AS x(c, d)
    ORDER BY 1
) s
"""


def lock_sensors(conn: psycopg.Connection[Any], keys: Iterable[int]) -> None:
    """Serialize with other processors on these sensors until the transaction ends (keys in ascending order)."""
    conn.execute(_LOCK_SENSORS, {"ns": SENSOR_LOCK, "keys": sorted(set(keys))}).fetchall()


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def tally_periods(
    conn: psycopg.Connection[Any], periods: Iterable[tuple[str, str, datetime]], *, items: int = MAX_ITEMS
) -> Changes:
    """Recount completeness and service levels of these (city, district, hour) periods and their days; the
    changed tallies are reported per city, at most `items` of them as event items."""
    ordered = sorted(set(periods))
    if not ordered:
        return Changes()
    params = {
        "cities": [p[0] for p in ordered],
        "districts": [p[1] for p in ordered],
        "hours": [p[2] for p in ordered],
    }
    conn.execute(_LOCK_DISTRICTS, {**params, "ns": DISTRICT_LOCK}).fetchall()
    conn.execute(_COMPLETENESS, params)
    rows = conn.execute(_HOURLY, params).fetchall()
    conn.execute(_DAILY, params)
    return Changes.of_items(
        (
            (
                city,
                {
                    "city": city,
                    "district": district,
                    "service": service,
                    "period_start": _iso(start),
                    "numerator": numerator,
                    "denominator": denominator,
                },
            )
            for city, district, service, start, numerator, denominator in rows
        ),
        limit=items,
    )


_CLOCK = "SELECT value, date_bin('1 hour', now(), 'epoch'::timestamptz) FROM processor_state WHERE key = %s"


def tally_completed_hours(conn: psycopg.Connection[Any], *, max_hours: int = 168) -> tuple[list[datetime], Changes]:
    """Tally every district for the hours completed since the last call by any processor (at most `max_hours`).

    Call inside a transaction. Returns the hours tallied (none when another processor holds the clock).
    """
    row = conn.execute(_CLOCK + " FOR UPDATE SKIP LOCKED", ("service_levels_until",)).fetchone()
    if row is None:
        return [], Changes()
    until, now_hour = row
    first = now_hour - timedelta(hours=1) if until is None else max(until, now_hour - timedelta(hours=max_hours))
    hours = [first + timedelta(hours=i) for i in range(round((now_hour - first).total_seconds()) // 3600)]
    if not hours:
        return [], Changes()
    districts = conn.execute("SELECT DISTINCT city, district FROM sensors ORDER BY 1, 2").fetchall()
    changes = tally_periods(conn, [(city, district, hour) for city, district in districts for hour in hours])
    conn.execute("UPDATE processor_state SET value = %s WHERE key = %s", (now_hour, "service_levels_until"))
    return hours, changes

"""The worker against a real PostgreSQL: readings in, aggregates, indices, service levels and events out."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from processing import Processor, ProcessorSettings, process_until_idle
from processing.claims import claim_windows, release_windows
from processing.windows import compute_windows, store_windows
from tests.processing.writes import write_readings
from tests.support import sensors
from tests.support.clock import clear_of_hour_end
from tests.support.roles import rows, running, wait_until
from tests.support.sensors import air, register

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


def _settings(url: str, **overrides: Any) -> ProcessorSettings:
    return ProcessorSettings(database_url=url, hour_rollup_delay_s=0, day_rollup_delay_s=0, **overrides)


def _process(url: str, **overrides: Any) -> int:
    with psycopg.connect(url) as conn:
        return process_until_idle(conn, _settings(url, **overrides))


def _hour_ago(hours: int) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - hours * HOUR


def _air(url: str, sensor_id: str = "aq-1", district: str = "Menteng") -> int:
    return register(url, air(sensor_id, district=district))[sensor_id]


def test_aggregates_of_every_width_equal_naive_statistics(fresh_database_url: str) -> None:
    url = fresh_database_url
    key = _air(url)
    start = _hour_ago(30).timestamp()
    rng = np.random.default_rng(7)
    ts = start + np.sort(rng.choice(2 * 3600, size=400, replace=False)).astype(float)
    values = np.round(rng.gamma(4.0, 10.0, ts.size), 1)  # rounded: ties inside windows
    write_readings(url, key, "pm25", ts, values)
    _process(url)
    for table, width in (("agg_1m", 60), ("agg_1h", 3600), ("agg_1d", 86400)):
        stored = rows(url, f"SELECT window_start, count, sum, mean, min, max, p50, p95, completeness FROM {table}")
        window = (ts // width) * width
        assert sorted(r[0].timestamp() for r in stored) == sorted(set(window.tolist()))
        for start_at, count, total, mean, vmin, vmax, p50, p95, complete in stored:
            x = values[window == start_at.timestamp()]
            assert count == x.size
            assert (total, mean) == (pytest.approx(x.sum(), rel=1e-12), pytest.approx(x.mean(), rel=1e-12))
            assert (vmin, vmax) == (x.min(), x.max())
            assert (p50, p95) == (np.percentile(x, 50), np.percentile(x, 95))  # exact, from the raw readings
            assert complete == pytest.approx(min(1.0, x.size * 60 / width))
    assert rows(url, "SELECT count(*) FROM dirty_windows UNION ALL SELECT count(*) FROM dirty_rollups") == [(0,), (0,)]


def _hourly_counts(url: str, key: int, first_hour: datetime, counts: list[int], value: float = 20.0) -> None:
    """Readings once a minute at `value`: counts[i] of them in hour i."""
    ts = [first_hour.timestamp() + i * 3600 + m * 60 for i, n in enumerate(counts) for m in range(n)]
    write_readings(url, key, "pm25", ts, [value] * len(ts))


def test_18_of_24_valid_hours_through_the_worker(fresh_database_url: str) -> None:
    url = fresh_database_url
    key = _air(url)
    first = _hour_ago(30)
    label = first + 24 * HOUR
    # 45 readings (75 % of 60) make an hour valid, 44 do not: 17 valid hours.
    _hourly_counts(url, key, first, [44] * 7 + [45] * 17)
    _process(url)
    query = "SELECT ispu, hours_valid, critical_parameter, details FROM ispu_hourly WHERE window_end = %s"
    ispu, hours_valid, critical, details = rows(url, query, (label,))[0]
    assert (ispu, hours_valid, critical) == (None, 17, None)
    assert details["pm25"] == {"hours_valid": 17}
    # One more reading in the first hour makes it valid: 18 of 24, mean 20.0 -> 50 + 50 / 39.9 * 4.5 = 55.6 -> 56.
    write_readings(url, key, "pm25", [first.timestamp() + 44 * 60], [20.0])
    _process(url)
    ispu, hours_valid, critical, details = rows(url, query, (label,))[0]
    assert (ispu, hours_valid, critical) == (56, 18, "pm25")
    assert details["pm25"] == {"hours_valid": 18, "mean_24h": 20.0}
    category, colour = rows(url, "SELECT category, colour_hex FROM ispu_hourly WHERE window_end = %s", (label,))[0]
    assert (category, colour) == ("Sedang", "#0000cc")
    # The AQI of the same label: NowCast of 12 hours of 20.0 -> 71.
    aqi = rows(url, "SELECT aqi, dominant_pollutant, nowcast, sub_indices FROM aqi_hourly WHERE hour = %s", (label,))
    assert aqi == [(71, "pm25", {"pm25": 20.0}, {"pm25": 71})]


def test_late_reading_changes_the_stored_aggregate_and_index(fresh_database_url: str) -> None:
    url = fresh_database_url
    key = _air(url)
    first = _hour_ago(27)
    _hourly_counts(url, key, first, [60] * 24)
    _process(url)
    late_minute = first + 23 * HOUR + timedelta(minutes=10)  # its window ended more than two hours ago
    assert late_minute + timedelta(minutes=1) + 2 * HOUR < datetime.now(UTC)
    label = first + 24 * HOUR
    before = rows(url, "SELECT ispu, details FROM ispu_hourly WHERE window_end = %s", (label,))[0]
    assert before[0] == 56

    write_readings(url, key, "pm25", [late_minute.timestamp() + 30], [4000.0])
    _process(url)
    minute = rows(url, "SELECT count, mean, max FROM agg_1m WHERE window_start = %s", (late_minute,))
    assert minute == [(2, 2010.0, 4000.0)]
    hour = rows(url, "SELECT count, mean FROM agg_1h WHERE window_start = %s", (first + 23 * HOUR,))
    assert hour == [(61, pytest.approx((60 * 20.0 + 4000.0) / 61))]
    after = rows(url, "SELECT ispu, details FROM ispu_hourly WHERE window_end = %s", (label,))[0]
    mean_24h = (23 * 20.0 + (60 * 20.0 + 4000.0) / 61) / 24  # 22.73 -> 50 + 50 / 39.9 * 7.23 = 59.06
    assert after[1]["pm25"]["mean_24h"] == pytest.approx(mean_24h)
    assert after[0] == 59
    # The labels after it that still include that hour changed too; the one before it did not.
    assert rows(url, "SELECT ispu FROM ispu_hourly WHERE window_end = %s", (label + 2 * HOUR,)) != [(56,)]


def test_window_redirtied_during_its_computation_is_computed_again(fresh_database_url: str) -> None:
    url = fresh_database_url
    key = _air(url)
    minute = _hour_ago(5)
    write_readings(url, key, "pm25", [minute.timestamp()], [10.0])
    settings = _settings(url)
    with psycopg.connect(url) as conn:
        claim = claim_windows(conn, worker="w1", limit=10, lease_s=60)
        assert len(claim) == 1
        write_readings(url, key, "pm25", [minute.timestamp() + 30], [30.0])  # arrives while "computing"
        with conn.transaction():
            has_readings = compute_windows(conn, claim)
            store_windows(conn, claim, has_readings, items=10)
            release_windows(conn, claim, worker="w1")
        # The claim read one or both readings; either way the window is still queued, released for another round.
        assert rows(url, "SELECT version, claimed_by FROM dirty_windows") == [(2, None)]
        process_until_idle(conn, settings)
    assert rows(url, "SELECT count, mean FROM agg_1m") == [(2, 20.0)]
    assert rows(url, "SELECT count(*) FROM dirty_windows") == [(0,)]


def test_window_left_without_readings_loses_its_aggregates(fresh_database_url: str) -> None:
    url = fresh_database_url
    key = _air(url)
    minute = _hour_ago(5)
    write_readings(url, key, "pm25", [minute.timestamp()], [10.0])
    _process(url)
    assert rows(url, "SELECT count(*) FROM agg_1m UNION ALL SELECT count(*) FROM agg_1h") == [(1,), (1,)]
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM readings")
        conn.execute("INSERT INTO dirty_windows (sensor_key, quantity, window_start) VALUES (%s, 1, %s)", (key, minute))
        conn.commit()
    _process(url)
    assert rows(
        url, "SELECT (SELECT count(*) FROM agg_1m), (SELECT count(*) FROM agg_1h), (SELECT count(*) FROM agg_1d)"
    ) == [(0, 0, 0)]
    assert rows(url, "SELECT count(*) FROM ispu_hourly") == [(0,)]


def test_traffic_service_levels_and_events(fresh_database_url: str) -> None:
    url = fresh_database_url
    counter = register(url, sensors.traffic("tc-1", road_function="arteri_primer"))["tc-1"]
    station = _air(url, "aq-2")
    hour = _hour_ago(4)
    minutes = hour.timestamp() + 60 * np.arange(60)
    # Per minute 50 motorcycles, 25 cars, 2.5 trucks on average: 3000 / 1500 / 150 per hour, 2 lanes.
    write_readings(url, counter, "sm", minutes, np.full(60, 50.0))
    write_readings(url, counter, "kr", minutes, np.full(60, 25.0))
    write_readings(url, counter, "kb", minutes, np.where(np.arange(60) % 2 == 0, 2.0, 3.0))
    write_readings(url, counter, "speed", minutes, np.full(60, 42.0))
    write_readings(url, station, "pm25", minutes[:50], np.full(50, 12.0))
    _process(url)

    traffic = rows(
        url,
        "SELECT flow_veh_h, flow_pcu_h, capacity_pcu_h, degree_of_saturation, los, los_target, los_met,"
        " mean_speed_kmh, completeness FROM traffic_hourly WHERE hour = %s",
        (hour,),
    )
    # 4650 veh/h = 2325 per lane >= 1050: 3000 * 0.25 + 1500 + 150 * 1.2 = 2430 PCU/h; C = 3536; DJ 0.687 -> C
    assert traffic == [
        (4650.0, pytest.approx(2430.0), pytest.approx(3536.0), pytest.approx(2430 / 3536), "C", "B", False, 42.0, 1.0)
    ]
    services = rows(
        url,
        "SELECT service, numerator, denominator FROM service_hourly WHERE period_start = %s ORDER BY service",
        (hour,),
    )
    # data: traffic 4 quantities x 60 + air 1 quantity x 50 of 60 = 290 / 300
    assert services == [("data", 290.0, 300.0), ("traffic", 0.0, 1.0)]
    day = hour.replace(hour=0)
    daily = rows(
        url, "SELECT service, numerator, denominator FROM service_daily WHERE period_start = %s ORDER BY 1", (day,)
    )
    assert ("traffic", 0.0, 1.0) in daily
    query = "SELECT received, expected FROM completeness_hourly WHERE sensor_key = %s AND hour = %s"
    assert rows(url, query, (station, hour)) == [(50.0, 60.0)]

    events = dict(rows(url, "SELECT DISTINCT ON (type) type, payload FROM events ORDER BY type, id DESC"))
    assert set(events) >= {"aggregates", "ispu", "aqi", "traffic", "service_levels"}
    item = events["traffic"]["items"][0]
    assert item == {
        "sensor_id": "tc-1",
        "hour": hour.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "degree_of_saturation": pytest.approx(2430 / 3536),
        "los": "C",
        "los_target": "B",
    }
    assert events["traffic"]["truncated"] is False
    windows = {p["window"] for t, p in rows(url, "SELECT type, payload FROM events") if t == "aggregates"}
    assert windows == {"1m", "1h", "1d"}
    aggregate = rows(url, "SELECT payload FROM events WHERE type = 'aggregates' ORDER BY id LIMIT 1")[0][0]["items"][0]
    assert set(aggregate) == {
        "sensor_id",
        "quantity",
        "window_start",
        "count",
        "mean",
        "min",
        "max",
        "p50",
        "p95",
        "completeness",
    }
    assert set(events["ispu"]["items"][0]) == {"sensor_id", "window_end", "ispu", "category", "critical_parameter"}
    assert set(events["aqi"]["items"][0]) == {"sensor_id", "hour", "aqi", "category", "dominant_pollutant"}


def test_service_clock_tallies_districts_that_went_silent(fresh_database_url: str) -> None:
    url = fresh_database_url
    clear_of_hour_end(10)  # the processor tallies up to its own hour; the test reads it a moment later
    key = _air(url, district="Gambir")
    write_readings(url, key, "pm25", [_hour_ago(3).timestamp()], [10.0])
    _process(url)
    last_hour = _hour_ago(1)
    # The station reported 3 hours ago, so it is expected in the hour that just ended, in which it sent nothing.
    assert rows(
        url, "SELECT service, numerator, denominator FROM service_hourly WHERE period_start = %s", (last_hour,)
    ) == [("data", 0.0, 60.0)]
    assert rows(url, "SELECT value FROM processor_state")[0][0] == last_hour + HOUR
    assert not math.isnan(rows(url, "SELECT count(*) FROM completeness_hourly")[0][0])


def test_current_hour_waits_out_its_delay_past_hours_do_not_and_stop_finishes_them(fresh_database_url: str) -> None:
    url = fresh_database_url
    clear_of_hour_end(10)  # "current", the processor's hour and _hour_ago(3) must all be reckoned in one hour
    key = _air(url)
    current = max(datetime.now(UTC).timestamp() - 5, _hour_ago(0).timestamp() + 1)  # inside the current hour
    write_readings(url, key, "pm25", [current, _hour_ago(3).timestamp()], [10.0, 20.0])
    settings = ProcessorSettings(database_url=url, hour_rollup_delay_s=600, day_rollup_delay_s=600)
    with psycopg.connect(url) as conn:
        process_until_idle(conn, settings)
    hours = rows(url, "SELECT window_start FROM agg_1h ORDER BY 1")
    assert hours == [(_hour_ago(3),)]  # the past hour at once; the current one is deferred
    deferred = rows(url, "SELECT width_s, due_at > now() + interval '9 minutes' FROM dirty_rollups ORDER BY 1")
    assert (3600, True) in deferred
    processor = Processor(settings.model_copy(update={"poll_interval_s": 0.2}))
    with running(processor):
        wait_until(lambda: rows(url, "SELECT count(*) FROM events") != [(0,)])
    # Stopping computed what was waiting, so nothing stays stale while no processor runs.
    assert rows(url, "SELECT count(*) FROM dirty_rollups") == [(0,)]
    assert len(rows(url, "SELECT window_start FROM agg_1h")) == 2

"""How lists select, order, filter and page stored rows, and how bad parameters are answered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.api import seed
from tests.support.api import Keys, assert_problem, walk
from tests.support.sensors import air, register, traffic

pytestmark = pytest.mark.integration

H0 = datetime(2026, 11, 20, tzinfo=UTC)
#: The first of the 500 hours of aggregates: 250 hours before the current hour, so that the walk holds windows on
#: both sides of "final" (the window's end plus the allowed lateness, reckoned from now) whenever the tests run.
A0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=250)


@pytest.fixture(scope="module")
def stored(api_database_url: str) -> Iterator[dict[str, int]]:
    with psycopg.connect(api_database_url) as conn:
        specs = [air(f"aq-{i:03d}", "jakarta", f"D{i % 4}") for i in range(150)]
        specs += [air(f"aq-b{i}", "bogor", "B0") for i in range(3)]
        specs += [traffic(f"tc-{i:03d}", "jakarta", f"D{i % 4}") for i in range(30)]
        keys = register(conn, specs)
        for i in range(150):
            # Station i has hourly values from H0 + i minutes' worth of offset: labels differ per station.
            seed.ispu_rows(conn, keys[f"aq-{i:03d}"], seed.hours(H0 + timedelta(hours=i % 3), 5), 10 * i)
            seed.aqi_rows(conn, keys[f"aq-{i:03d}"], seed.hours(H0, 5), i)
        for i in range(3):
            seed.ispu_rows(conn, keys[f"aq-b{i}"], seed.hours(H0, 2), 500)
        for i in range(30):
            seed.traffic_rows(conn, keys[f"tc-{i:03d}"], seed.hours(H0, 6), 100.0 * i)
        # 3 quantities x 500 hours of aggregates for one station: a large list to walk.
        conn.execute(
            "INSERT INTO agg_1h (sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95,"
            " completeness) SELECT %s, q, %s + make_interval(hours => h), 60, 60 * h, h, h, h, h, h, 1"
            " FROM generate_series(0, 499) h, unnest(ARRAY[1, 2, 3]) q",
            (keys["aq-000"], A0),
        )
        conn.commit()
    return keys


def test_ispu_at_picks_the_latest_label_at_or_before(client, keys: Keys, stored) -> None:
    at = H0 + timedelta(hours=3)
    items = walk(client, "/v1/air/ispu", {"city": "jakarta", "at": at.isoformat(), "limit": 40}, keys.header())
    assert [i["sensor_id"] for i in items] == [f"aq-{i:03d}" for i in range(150)]
    for item in items:
        i = int(item["sensor_id"][3:])
        first = H0 + timedelta(hours=i % 3)
        latest = min(at, first + timedelta(hours=4))
        assert item["window_end"] == latest.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert item["ispu"] == 10 * i + (latest - first) // timedelta(hours=1)
        assert item["district"] == f"D{i % 4}"
    # Before a station's first label it has no value and is left out.
    early = walk(client, "/v1/air/ispu", {"city": "jakarta", "at": H0.isoformat()}, keys.header())
    assert {i["sensor_id"] for i in early} == {f"aq-{i:03d}" for i in range(150) if i % 3 == 0}


def test_filters_by_city_and_district(client, keys: Keys, stored) -> None:
    at = (H0 + timedelta(days=1)).isoformat()
    bogor = walk(client, "/v1/air/ispu", {"city": "bogor", "at": at}, keys.header())
    assert [i["sensor_id"] for i in bogor] == ["aq-b0", "aq-b1", "aq-b2"]
    d2 = walk(client, "/v1/air/aqi", {"city": "jakarta", "district": "D2", "at": at, "limit": 9}, keys.header())
    assert {i["sensor_id"] for i in d2} == {f"aq-{i:03d}" for i in range(150) if i % 4 == 2}
    assert all(i["hour"] == "2026-11-20T04:00:00Z" for i in d2)
    segments = walk(client, "/v1/traffic/segments", {"district": "D1", "at": at}, keys.header())
    assert [s["sensor_id"] for s in segments] == [f"tc-{i:03d}" for i in range(30) if i % 4 == 1]
    assert all(s["hour"] == "2026-11-20T05:00:00Z" and s["los"] == "B" for s in segments)
    assert walk(client, "/v1/traffic/segments", {"city": "nowhere", "at": at}, keys.header()) == []


def test_aggregates_walk_a_large_result_exactly_once(client, keys: Keys, stored) -> None:
    params = {"window": "1h", "start": A0.isoformat(), "end": (A0 + timedelta(hours=500)).isoformat(), "limit": 97}
    items = walk(client, "/v1/sensors/aq-000/aggregates", params, keys.header())
    assert len(items) == 1500
    keys_seen = [(i["quantity"], i["window_start"]) for i in items]
    assert len(set(keys_seen)) == 1500
    assert keys_seen == sorted(keys_seen, key=lambda k: (["pm25", "pm10", "no2"].index(k[0]), k[1]))
    now = datetime.now(UTC)
    for item in items:
        end = datetime.fromisoformat(item["window_start"]) + timedelta(hours=1)
        if abs(end + timedelta(hours=2) - now) > timedelta(minutes=1):  # the default allowed lateness is 2 h
            assert item["final"] is (end + timedelta(hours=2) <= now), item
    assert {i["final"] for i in items} == {True, False}
    only = walk(client, "/v1/sensors/aq-000/aggregates", {**params, "quantity": "pm10", "limit": 1000}, keys.header())
    assert len(only) == 500
    assert {i["quantity"] for i in only} == {"pm10"}
    assert only[7]["mean"] == 7.0
    # The range is half-open: [start, end).
    window = {
        "window": "1h",
        "start": (A0 + timedelta(hours=10)).isoformat(),
        "end": (A0 + timedelta(hours=12)).isoformat(),
    }
    assert len(walk(client, "/v1/sensors/aq-000/aggregates", window, keys.header())) == 6


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/sensors/aq-000/aggregates", {}, 422),
        ("/v1/sensors/aq-000/aggregates", {"window": "5m"}, 422),
        ("/v1/sensors/aq-000/aggregates", {"window": "1h", "quantity": "pm1"}, 400),
        ("/v1/sensors/aq-000/aggregates", {"window": "1h", "start": "yesterday"}, 400),
        ("/v1/sensors/aq-000/aggregates", {"window": "1h", "start": "2026-11-20T00:00:00"}, 400),
        (
            "/v1/sensors/aq-000/aggregates",
            {"window": "1h", "start": "2026-11-21T00:00:00Z", "end": "2026-11-20T00:00:00Z"},
            400,
        ),
        ("/v1/sensors/aq-000/aggregates", {"window": "1h", "start": "2020-01-01T00:00:00Z"}, 400),
        (
            "/v1/sensors/aq-000/aggregates",
            {"window": "1m", "start": "2026-09-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
            400,
        ),
        ("/v1/sensors/aq-000/aggregates", {"window": "1h", "cursor": "bm9wZQ"}, 400),
        ("/v1/sensors/aq-000/aggregates", {"window": "1h", "cursor": "WyJ4IiwieSJd"}, 400),
        ("/v1/sensors/aq-000/aggregates", {"window": "1h", "limit": 1001}, 422),
        ("/v1/sensors/nope/aggregates", {"window": "1h"}, 404),
        ("/v1/sensors/aq-000/readings", {"start": "2026-01-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, 400),
        ("/v1/sensors/nope/readings", {}, 404),
        ("/v1/air/ispu", {"at": "2026-13-01T00:00:00Z"}, 400),  # every bad date is a 400
        ("/v1/air/ispu", {"limit": -1}, 422),
        ("/v1/traffic/segments", {"cursor": "x" * 600}, 422),
        ("/v1/service-levels", {"service": "water"}, 422),
        ("/v1/service-levels", {"start": "2024-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 400),
        ("/v1/rejected", {"reason": "bad_mood"}, 422),
        ("/v1/rejected", {"cursor": "WyJ4Il0"}, 400),  # ["x"]: the cursor of a list by integer id holds one
        ("/v1/rejected/0", {}, 422),
        ("/v1/rejected/99999", {}, 404),
        ("/v1/stream", {"types": "weather"}, 400),
    ],
)
def test_bad_parameters_are_problems(client, keys: Keys, stored, path: str, params: dict, status: int) -> None:
    body = assert_problem(client.get(path, params=params, headers=keys.header()), status)
    if status == 422:
        assert body["errors"]


def test_default_range_is_the_last_24_hours(client, keys: Keys, stored, api_database_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(api_database_url) as conn:
        conn.execute(
            "INSERT INTO readings (sensor_key, quantity, ts, value, received_at)"
            " SELECT %s, 1, %s - make_interval(hours => h), h, now() FROM generate_series(1, 30) h",
            (stored["aq-001"], now),
        )
        conn.commit()
    items = walk(client, "/v1/sensors/aq-001/readings", {"limit": 10}, keys.header())
    assert [i["value"] for i in items] == [float(h) for h in range(23, 0, -1)]
    assert all(i["quantity"] == "pm25" and i["ts"].endswith("Z") for i in items)

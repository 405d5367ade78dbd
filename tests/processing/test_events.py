"""Change events as the processor writes them: one per type and city per round, each naming its city."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from processing import ProcessorSettings, process_until_idle
from processing.claims import claim_windows
from processing.windows import compute_windows, store_windows
from tests.processing.writes import write_readings
from tests.support.roles import rows
from tests.support.sensors import air, register, traffic

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
CITIES = {"jakarta": ("Menteng", "aq-j1", "aq-j2", "tc-j1"), "bandung": ("Coblong", "aq-b1", "aq-b2", "tc-b1")}


def _city(url: str) -> dict[str, str]:
    """Two cities of two air stations and a counter each; returns sensor_id -> city."""
    specs = [
        air(sensor_id, city, district) if sensor_id.startswith("aq") else traffic(sensor_id, city, district)
        for city, (district, *sensor_ids) in CITIES.items()
        for sensor_id in sensor_ids
    ]
    register(url, specs)
    return {spec.sensor_id: spec.city for spec in specs}


def _readings(url: str, hour: datetime) -> None:
    minutes = hour.timestamp() + 60 * np.arange(60)
    keys = dict(rows(url, "SELECT sensor_id, sensor_key FROM sensors"))
    for sensor_id, key in keys.items():
        quantities = ("pm25", "pm10") if sensor_id.startswith("aq") else ("sm", "kr", "kb", "speed")
        for n, quantity in enumerate(quantities):
            write_readings(url, key, quantity, minutes, np.full(60, 10.0 + n))


def test_one_event_per_type_and_city_per_round(fresh_database_url: str) -> None:
    url = fresh_database_url
    city_of = _city(url)
    _readings(url, datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR)
    with psycopg.connect(url) as conn:
        process_until_idle(conn, ProcessorSettings(database_url=url, hour_rollup_delay_s=0, day_rollup_delay_s=0))

    # xmin names the transaction (the round) that wrote the event.
    events = rows(url, "SELECT xmin::text, type, city, payload FROM events ORDER BY id")
    assert {(t, c) for _, t, c, _ in events} == {
        (t, c) for t in ("aggregates", "ispu", "aqi", "traffic", "service_levels") for c in CITIES
    }
    per_round = Counter((xmin, t, c, p.get("window")) for xmin, t, c, p in events)
    assert max(per_round.values()) == 1, per_round
    for _, type_, city, payload in events:
        assert payload["items"], (type_, city)
        for item in payload["items"]:
            named = item["city"] if type_ == "service_levels" else city_of[item["sensor_id"]]
            assert named == city, (type_, city, item)
        assert payload["truncated"] is False
    assert set(events[0][3]) <= {"window", "items", "truncated"}  # the payload format is unchanged


def test_items_are_capped_per_city(fresh_database_url: str) -> None:
    url = fresh_database_url
    _city(url)
    _readings(url, datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR)
    with psycopg.connect(url) as conn:
        claim = claim_windows(conn, worker="w", limit=10_000, lease_s=60)
        with conn.transaction():
            changed = store_windows(conn, claim, compute_windows(conn, claim), items=3)[60]
    # Per city: 2 stations x 2 quantities x 60 minutes + a counter's 4 quantities x 60 minutes.
    assert changed.total == {"jakarta": 480, "bandung": 480}
    assert {city: len(items) for city, items in changed.items.items()} == {"jakarta": 3, "bandung": 3}
    newest = changed.items["bandung"][0]["window_start"]
    assert all(item["window_start"] == newest for item in changed.items["bandung"])  # newest first

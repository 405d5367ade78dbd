"""Two cities in one database, with a row of each kind the API serves, for the tests of the city rule.

Sensor ids interleave the two cities in id order (`aq-01` is Jakarta's, `aq-02` Bandung's, ...), so every page and
every cursor of a list sorted by sensor falls among both cities. Rows are written straight into the tables; their
values do not matter here, only whose they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from livinglab.alarms.episodes import RaiseRequest, raise_alarm
from livinglab.alarms.rules import RuleSpec
from livinglab.alarms.store import import_rules
from livinglab.events import EventType, items_payload, latest_event_id, publish_event
from livinglab.sensors import SensorSpec
from livinglab.storage.cities import set_city_targets
from livinglab.storage.keys import Scope, create_key
from tests.api import seed
from tests.support import sensors

CITY_A = "jakarta"
CITY_B = "bandung"
#: Where each city's sensors stand (lat, lon), far enough apart for a map to tell them apart.
CENTRES = {CITY_A: (-6.20, 106.82), CITY_B: (-6.91, 107.61)}
DISTRICTS = {CITY_A: ("Menteng", "Gambir"), CITY_B: ("Coblong", "Sukajadi")}


@dataclass
class TwoCities:
    """What `seed_two_cities` stored: sensor ids by city, and keys by what they may see."""

    sensors: dict[str, str] = field(default_factory=dict)  # sensor_id -> city
    keys: dict[str, str] = field(default_factory=dict)  # label -> key

    def of(self, city: str) -> list[str]:
        return sorted(s for s, c in self.sensors.items() if c == city)

    def header(self, label: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[label]}"}


def _spec(sensor_id: str, city: str, number: int, kind: str) -> SensorSpec:
    lat, lon = CENTRES[city]
    district = DISTRICTS[city][(number // 2) % 2]
    # A city's counter stands a little east of its station, so both markers show on a map.
    position = {"lat": lat + 0.01 * number, "lon": lon + 0.012 * (number % 3) + (0.004 if kind == "traffic" else 0)}
    base = sensors.air(sensor_id, city, district) if kind == "air" else sensors.traffic(sensor_id, city, district)
    return base.model_copy(update=position)


def seed_two_cities(conn: psycopg.Connection[Any], now: datetime | None = None) -> TwoCities:
    """Sensors, indices, aggregates, readings, counters, rejected messages, service levels, a target, notification
    channels and keys of Jakarta and Bandung (and one rejected message of no city, one channel of every city).
    Commits."""
    now = now or datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    stored = TwoCities()
    specs = []
    for number in range(1, 5):
        city = CITY_A if number % 2 else CITY_B
        for kind, prefix in (("air", "aq"), ("traffic", "tc")):
            sensor_id = f"{prefix}-{number:02d}"
            specs.append(_spec(sensor_id, city, number, kind))
            stored.sensors[sensor_id] = city
    ids = sensors.register(conn, specs)
    for spec in specs:
        key = ids[spec.sensor_id]
        quantity = 1 if spec.kind.value == "air" else 102
        if spec.kind.value == "air":
            seed.ispu_rows(conn, key, [hour], 40)
            seed.aqi_rows(conn, key, [hour], 40)
        else:
            seed.traffic_rows(conn, key, [hour - timedelta(hours=1)], 900.0)
        for table, start in (("agg_1h", hour - timedelta(hours=2)), ("agg_1m", now - timedelta(minutes=30))):
            conn.execute(
                f"INSERT INTO {table} (sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95,"
                " completeness) VALUES (%s, %s, %s, 1, 20, 20, 20, 20, 20, 20, 1)",
                (key, quantity, start.replace(second=0, microsecond=0)),
            )
        conn.execute(
            "INSERT INTO readings (sensor_key, quantity, ts, value, received_at) VALUES (%s, %s, %s, 20, %s)",
            (key, quantity, now - timedelta(minutes=10), now),
        )
        conn.execute(
            "INSERT INTO ingest_counters (sensor_key, hour, messages, accepted, last_seen) VALUES (%s, %s, 1, 1, %s)",
            (key, hour, now),
        )
        conn.execute(
            "INSERT INTO rejected (received_at, topic, city, kind, sensor_id, sensor_key, reason, detail, payload,"
            " payload_size) VALUES (%s, %s, %s, %s, %s, %s, 'out_of_range', 'seeded', %s, 2)",
            (
                now - timedelta(minutes=5),
                f"livinglab/v1/{spec.city}/{spec.kind.value}/{spec.sensor_id}",
                spec.city,
                spec.kind.value,
                spec.sensor_id,
                key,
                b"{}",
            ),
        )
    conn.execute(
        "INSERT INTO rejected (received_at, topic, reason, detail, payload, payload_size)"
        " VALUES (%s, 'livinglab/v1/no-city', 'topic_invalid', 'seeded', %s, 2)",
        (now - timedelta(minutes=5), b"{}"),
    )
    for city, districts in DISTRICTS.items():
        for service in ("air", "traffic", "data"):
            conn.execute(
                "INSERT INTO service_hourly (city, district, service, period_start, numerator, denominator)"
                " VALUES (%s, %s, %s, %s, 8, 10)",
                (city, districts[0], service, hour - timedelta(hours=2)),
            )
    _seed_alarms(conn, ids, specs)
    set_city_targets(conn, CITY_B, {"air": 0.5})
    # Notification channels: one of each city and one of every city (seen by keys without cities only).
    for channel_id, cities in (("ch-jakarta", [CITY_A]), ("ch-bandung", [CITY_B]), ("ch-every", [])):
        conn.execute(
            "INSERT INTO notification_channels (channel_id, type, name, cities, config)"
            " VALUES (%s, 'webhook', %s, %s, %s)",
            (channel_id, channel_id, cities, Jsonb({"url": "http://127.0.0.1:9/hook", "secret": "s" * 32})),
        )
    labels: dict[str, tuple[Scope, tuple[str, ...]]] = {
        "all": (Scope.ADMIN, ()),
        "a": (Scope.ADMIN, (CITY_A,)),
        "b": (Scope.ADMIN, (CITY_B,)),
        "both": (Scope.READ, (CITY_A, CITY_B)),
        "a-read": (Scope.READ, (CITY_A,)),
    }
    for label, (scope, cities) in labels.items():
        stored.keys[label] = create_key(conn, scope, name=f"cities-{label}", cities=cities)
    conn.commit()
    return stored


def _seed_alarms(conn: psycopg.Connection[Any], ids: dict[str, int], specs: list[SensorSpec]) -> None:
    """Two rules per city (scoped to the city) and an active alarm of each rule for each sensor it covers."""
    rules = [
        RuleSpec(
            rule_id=f"{prefix}-{city}",
            name=f"{prefix} {city}",
            metric=metric,
            op=">",
            threshold=1,
            severity=severity,
            city=city,
        )
        for city in (CITY_A, CITY_B)
        for prefix, metric, severity in (("silent", "silence_s", "warning"), ("sparse", "completeness_1h", "info"))
    ]
    import_rules(conn, rules)
    for rule in rules:
        for spec in specs:
            if spec.city == rule.city:
                raise_alarm(conn, RaiseRequest(str(rule.rule_id), rule.severity, (), ids[spec.sensor_id], 2.0))


def publish_city_events(url: str, marker: str) -> dict[str, int]:
    """An `ispu` event of each city, one of no city and a last one of Jakarta again, each committed on its own and
    each item naming `marker`; returns the event ids by label (`jakarta`, `bandung`, `none`, `jakarta again`)."""
    ids: dict[str, int] = {}
    for label, city in ((CITY_A, CITY_A), (CITY_B, CITY_B), ("none", None), (f"{CITY_A} again", CITY_A)):
        with psycopg.connect(url) as conn:
            publish_event(conn, EventType.ISPU, items_payload([{"sensor_id": marker, "city": city}]), city=city)
            conn.commit()
            ids[label] = latest_event_id(conn)
    return ids

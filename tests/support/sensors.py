"""Sensors for tests: specs of an air station and a traffic counter, and one way to register them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from livinglab.sensors import SensorSpec
from livinglab.storage.registry import upsert_sensors

#: The fields of an air station in Jakarta's Menteng district (add `sensor_id`).
AIR: dict[str, Any] = {"city": "jakarta", "district": "Menteng", "kind": "air", "lat": -6.2, "lon": 106.8}
#: The fields of a traffic counter on a four-lane divided secondary arterial there (add `sensor_id`).
TRAFFIC: dict[str, Any] = {
    **AIR,
    "kind": "traffic",
    "road_type": "4/2-T",
    "lanes": 2,
    "road_function": "arteri_sekunder",
    "city_population": 10_000_000,
}


def air(sensor_id: str, city: str = "jakarta", district: str = "Menteng", **fields: Any) -> SensorSpec:
    """An air station (by default in Jakarta's Menteng district); `fields` override or add spec fields."""
    return SensorSpec.model_validate({**AIR, "sensor_id": sensor_id, "city": city, "district": district, **fields})


def traffic(sensor_id: str, city: str = "jakarta", district: str = "Menteng", **fields: Any) -> SensorSpec:
    """A traffic counter (a four-lane divided secondary arterial, by default in Menteng)."""
    return SensorSpec.model_validate({**TRAFFIC, "sensor_id": sensor_id, "city": city, "district": district, **fields})


def register(
    database: str | psycopg.Connection[Any], *sensors: SensorSpec | str | Iterable[SensorSpec]
) -> dict[str, int]:
    """Register (insert or update) sensors; returns their keys by sensor id.

    Each argument is a spec, an iterable of specs (a scenario's), or a bare sensor id, which stands for `air(id)`.
    `database` is a URL (committed here) or an open connection (the caller commits).
    """
    specs: list[SensorSpec] = []
    for sensor in sensors:
        if isinstance(sensor, str):
            specs.append(air(sensor))
        elif isinstance(sensor, SensorSpec):
            specs.append(sensor)
        else:
            specs.extend(sensor)
    if not isinstance(database, str):
        return _register(database, specs)
    with psycopg.connect(database) as conn:
        keys = _register(conn, specs)
        conn.commit()
    return keys


def _register(conn: psycopg.Connection[Any], specs: list[SensorSpec]) -> dict[str, int]:
    upsert_sensors(conn, specs)
    rows = conn.execute(
        "SELECT sensor_id, sensor_key FROM sensors WHERE sensor_id = ANY(%s)", ([s.sensor_id for s in specs],)
    )
    return dict(rows.fetchall())

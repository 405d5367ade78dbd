"""Registering sensors straight into a test database, and reading rows back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from livinglab.sensors import SensorSpec
from livinglab.storage.registry import insert_sensor

#: Road attributes a traffic counter needs; the tests that use them judge nothing by them.
_TRAFFIC = {"road_type": "4/2-T", "lanes": 2, "road_function": "arteri_sekunder", "city_population": 1_000_000}


def register_sensors(url: str, sensors: Mapping[str, tuple[str, str]]) -> None:
    """Register each `sensor_id: (city, kind)` in district `d` at (0, 0)."""
    with psycopg.connect(url) as conn:
        for sensor_id, (city, kind) in sensors.items():
            spec = {"sensor_id": sensor_id, "city": city, "district": "d", "kind": kind, "lat": 0, "lon": 0}
            insert_sensor(conn, SensorSpec.model_validate({**spec, **(_TRAFFIC if kind == "traffic" else {})}))
        conn.commit()


def fetch_rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()

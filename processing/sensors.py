"""What the processor needs to know about the sensors it computes for, read from the registry in one query."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from livinglab.domain import Kind, RoadFunction, RoadType
from processing.traffic import (
    DEFAULT_CARRIAGEWAY_WIDTH_M,
    DEFAULT_DIRECTION_SPLIT_PCT,
    DEFAULT_LANE_WIDTH_M,
    DEFAULT_SIDE_FRICTION_FACTOR,
    Road,
)

_SELECT = """
SELECT sensor_key, kind, city, district, interval_s, road_type, lanes, road_function, city_population,
       lane_width_m, carriageway_width_m, direction_split_pct, side_friction_factor, capacity_override_pcu_h
FROM sensors WHERE sensor_key = ANY(%s::int4[])
"""


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """A registered sensor as the processor sees it. `road` is set for traffic counters with complete attributes."""

    sensor_key: int
    kind: Kind
    city: str
    district: str
    interval_s: int
    road: Road | None = None


def _road(row: tuple[Any, ...]) -> Road | None:
    road_type, lanes, road_function, population = row[5:9]
    if road_type is None or lanes is None or road_function is None or population is None:
        return None
    lane_width, carriageway, split, friction, override = row[9:14]
    return Road(
        road_type=RoadType(road_type),
        lanes=int(lanes),
        road_function=RoadFunction(road_function),
        city_population=int(population),
        lane_width_m=DEFAULT_LANE_WIDTH_M if lane_width is None else float(lane_width),
        carriageway_width_m=DEFAULT_CARRIAGEWAY_WIDTH_M if carriageway is None else float(carriageway),
        direction_split_pct=DEFAULT_DIRECTION_SPLIT_PCT if split is None else float(split),
        side_friction_factor=DEFAULT_SIDE_FRICTION_FACTOR if friction is None else float(friction),
        capacity_override_pcu_h=None if override is None else float(override),
    )


def load_sensors(conn: psycopg.Connection[Any], keys: Iterable[int]) -> dict[int, SensorInfo]:
    """The registered sensors among `keys` (a deleted sensor is simply absent)."""
    rows = conn.execute(_SELECT, (sorted(set(keys)),)).fetchall()
    return {
        int(r[0]): SensorInfo(
            sensor_key=int(r[0]),
            kind=Kind(r[1]),
            city=r[2],
            district=r[3],
            interval_s=int(r[4]),
            road=_road(r) if r[1] == Kind.TRAFFIC else None,
        )
        for r in rows
    }

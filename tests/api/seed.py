"""Rows written straight into the index and counter tables, for tests of pagination, filters and parameters.

Value semantics are tested on data that went through the ingest and processing path; these rows only exercise
how the API selects, orders and pages what is stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def ispu_rows(conn: psycopg.Connection[Any], key: int, hours: list[datetime], value: int) -> None:
    for i, h in enumerate(hours):
        conn.execute(
            "INSERT INTO ispu_hourly (sensor_key, window_end, ispu, category, colour_hex, critical_parameter,"
            " sub_indices, hours_valid) VALUES (%s, %s, %s, 'Sedang', '#0000ff', 'pm25', %s, 24)",
            (key, h, value + i, Jsonb({"pm25": value + i, "pm10": 10})),
        )


def aqi_rows(conn: psycopg.Connection[Any], key: int, hours: list[datetime], value: int) -> None:
    for i, h in enumerate(hours):
        conn.execute(
            "INSERT INTO aqi_hourly (sensor_key, hour, aqi, category, dominant_pollutant, nowcast, sub_indices)"
            " VALUES (%s, %s, %s, 'Moderate', 'pm25', %s, %s)",
            (key, h, value + i, Jsonb({"pm25": 20.5}), Jsonb({"pm25": value + i})),
        )


def traffic_rows(conn: psycopg.Connection[Any], key: int, hours: list[datetime], flow: float) -> None:
    for i, h in enumerate(hours):
        conn.execute(
            "INSERT INTO traffic_hourly (sensor_key, hour, flow_veh_h, flow_pcu_h, capacity_pcu_h,"
            " degree_of_saturation, los, los_target, los_met, mean_speed_kmh, completeness)"
            " VALUES (%s, %s, %s, %s, 3000, %s, 'B', 'C', true, 40, 1)",
            (key, h, flow + i, flow + i, (flow + i) / 3000),
        )


def hours(start: datetime, count: int) -> list[datetime]:
    return [start + timedelta(hours=i) for i in range(count)]

"""The sensor registry in the database: create, read, update, delete, and the ingester's lookup table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from livinglab.domain import Kind
from livinglab.sensors import SensorSpec
from livinglab.storage._db import CHANNEL_REGISTRY

#: Columns of `sensors` that hold a SensorSpec field, in SensorSpec order (allow-listed identifiers).
SPEC_COLUMNS: tuple[str, ...] = tuple(SensorSpec.model_fields)


@dataclass(frozen=True, slots=True)
class SensorRecord:
    """A registered sensor: its spec plus what the database assigned."""

    sensor_key: int
    spec: SensorSpec
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """What the ingester needs to know about a sensor to accept its readings."""

    sensor_key: int
    city: str
    kind: Kind
    interval_s: int


def _record(row: dict[str, Any]) -> SensorRecord:
    spec = SensorSpec.model_validate({k: row[k] for k in SPEC_COLUMNS if row[k] is not None})
    return SensorRecord(row["sensor_key"], spec, row["created_at"], row["updated_at"])


def _values(spec: SensorSpec) -> list[Any]:
    data = spec.model_dump(mode="json")
    return [data[c] for c in SPEC_COLUMNS]


def insert_sensor(conn: psycopg.Connection[Any], spec: SensorSpec) -> SensorRecord:
    """Register a sensor. Raises psycopg.errors.UniqueViolation if the id is taken."""
    query = sql.SQL("INSERT INTO sensors ({cols}) VALUES ({vals}) RETURNING *").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, SPEC_COLUMNS)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(SPEC_COLUMNS)),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, _values(spec))
        row = cur.fetchone()
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, spec.sensor_id))
    assert row is not None
    return _record(row)


def upsert_sensors(conn: psycopg.Connection[Any], specs: Iterable[SensorSpec]) -> int:
    """Insert or update many sensors (bulk import); returns how many were written."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in SPEC_COLUMNS if c != "sensor_id"
    )
    query = sql.SQL(
        "INSERT INTO sensors ({cols}) VALUES ({vals}) ON CONFLICT (sensor_id) DO UPDATE SET {set}, updated_at = now()"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, SPEC_COLUMNS)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(SPEC_COLUMNS)),
        set=assignments,
    )
    rows = [_values(s) for s in specs]
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(query, rows)
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, "*"))
    return len(rows)


def update_sensor(conn: psycopg.Connection[Any], spec: SensorSpec) -> SensorRecord | None:
    """Replace a sensor's attributes; None if it does not exist."""
    query = sql.SQL("UPDATE sensors SET {set}, updated_at = now() WHERE sensor_id = %s RETURNING *").format(
        set=sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in SPEC_COLUMNS if c != "sensor_id")
    )
    values = [v for c, v in zip(SPEC_COLUMNS, _values(spec), strict=True) if c != "sensor_id"]
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, [*values, spec.sensor_id])
        row = cur.fetchone()
        if row is not None:
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, spec.sensor_id))
    return _record(row) if row else None


#: Tables keyed by sensor_key whose rows go when their sensor is deleted.
_SENSOR_TABLES = (
    "readings", "dirty_windows", "agg_1m", "agg_1h", "agg_1d", "ispu_hourly", "aqi_hourly",
    "traffic_hourly", "ingest_counters", "ingest_latency", "dirty_rollups", "completeness_hourly",
    "rejected_drops",
)  # fmt: skip
#: Public name of the same list, for roles that delete a sensor without a blocking connection (the API).
SENSOR_DATA_TABLES: tuple[str, ...] = _SENSOR_TABLES


def delete_sensor(conn: psycopg.Connection[Any], sensor_id: str) -> bool:
    """Delete a sensor and every row stored for it. False if it did not exist."""
    row = conn.execute("DELETE FROM sensors WHERE sensor_id = %s RETURNING sensor_key", (sensor_id,)).fetchone()
    if row is None:
        return False
    for table in _SENSOR_TABLES:
        conn.execute(sql.SQL("DELETE FROM {} WHERE sensor_key = %s").format(sql.Identifier(table)), (row[0],))
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, sensor_id))
    return True


def get_sensor(conn: psycopg.Connection[Any], sensor_id: str) -> SensorRecord | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM sensors WHERE sensor_id = %s", (sensor_id,)).fetchone()
    return _record(row) if row else None


def list_sensors(
    conn: psycopg.Connection[Any], *, city: str | None = None, kind: Kind | None = None
) -> Sequence[SensorRecord]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM sensors WHERE (%(city)s::text IS NULL OR city = %(city)s)"
            " AND (%(kind)s::text IS NULL OR kind = %(kind)s) ORDER BY sensor_id",
            {"city": city, "kind": kind.value if kind else None},
        ).fetchall()
    return [_record(r) for r in rows]


def load_registry(conn: psycopg.Connection[Any]) -> dict[str, RegistryEntry]:
    """sensor_id -> RegistryEntry for every registered sensor (the ingester's lookup table)."""
    rows = conn.execute("SELECT sensor_id, sensor_key, city, kind, interval_s FROM sensors").fetchall()
    return {r[0]: RegistryEntry(r[1], r[2], Kind(r[3]), r[4]) for r in rows}

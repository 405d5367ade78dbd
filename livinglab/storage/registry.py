"""The sensor registry in the database: create, read, update, delete, and the ingester's lookup table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from livinglab.domain import Kind
from livinglab.errors import LivinglabError
from livinglab.field_maps import DEFAULT_MEMBER_MAPS, MemberMap, compile_field_map
from livinglab.sensors import SensorSpec
from livinglab.storage._db import CHANNEL_REGISTRY

#: Columns of `sensors` that hold a SensorSpec field, in SensorSpec order (allow-listed identifiers).
SPEC_COLUMNS: tuple[str, ...] = tuple(SensorSpec.model_fields)
#: The unique index that keeps DevEUIs apart (migration 0100): a violation of it is a DevEUI taken by another sensor.
DEV_EUI_INDEX = "sensors_dev_eui"
#: The columns the ingester's lookup table is built from, in `registry_entry` order.
REGISTRY_COLUMNS = "sensor_id, sensor_key, city, kind, interval_s, dev_eui, field_map"


class DevEuiTakenError(LivinglabError):
    """A DevEUI is already registered for another sensor."""

    def __init__(self, message: str, *, dev_eui: str, sensor_id: str | None = None) -> None:
        super().__init__(message)
        self.dev_eui = dev_eui
        self.sensor_id = sensor_id


def is_dev_eui_conflict(exc: psycopg.errors.UniqueViolation) -> bool:
    """Whether a unique violation is the DevEUI index's (rather than a taken sensor id)."""
    return exc.diag.constraint_name == DEV_EUI_INDEX


@dataclass(frozen=True, slots=True)
class SensorRecord:
    """A registered sensor: its spec plus what the database assigned."""

    sensor_key: int
    spec: SensorSpec
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """What the ingester needs to know about a sensor to accept its readings (LoRaWAN sensors: also its DevEUI and
    compiled field map)."""

    sensor_key: int
    city: str
    kind: Kind
    interval_s: int
    sensor_id: str = ""
    dev_eui: str | None = None
    members: MemberMap | None = field(default=None, compare=False, repr=False)

    @property
    def member_map(self) -> MemberMap:
        """How codec output maps to this sensor's quantities (its field map, else its kind's quantity names)."""
        return self.members if self.members is not None else DEFAULT_MEMBER_MAPS[self.kind]


def registry_entry(row: Sequence[Any]) -> RegistryEntry:
    """A lookup-table entry from a row of `REGISTRY_COLUMNS`."""
    sensor_id, key, city, kind, interval_s, dev_eui, field_map = row
    kind = Kind(kind)
    members = compile_field_map(field_map, kind) if field_map else None
    return RegistryEntry(key, city, kind, interval_s, sensor_id, dev_eui, members)


def _record(row: dict[str, Any]) -> SensorRecord:
    spec = SensorSpec.model_validate({k: row[k] for k in SPEC_COLUMNS if row[k] is not None})
    return SensorRecord(row["sensor_key"], spec, row["created_at"], row["updated_at"])


def spec_values(spec: SensorSpec) -> dict[str, Any]:
    """The column values of a sensor, by column name, ready to send (the field map as jsonb)."""
    data = spec.model_dump(mode="json", exclude={"field_map"})
    data["field_map"] = None if spec.field_map is None else Jsonb(_field_map_json(spec))
    return data


def _field_map_json(spec: SensorSpec) -> dict[str, Any]:
    dumped: Mapping[str, Any] = spec.model_dump(mode="json", include={"field_map"})["field_map"]
    # A target without a unit is written as its quantity name alone, as people write it.
    return {
        member: {"quantity": v["quantity"]} if isinstance(v, dict) and v.get("unit") is None else v
        for member, v in dumped.items()
    }


def _values(spec: SensorSpec) -> list[Any]:
    data = spec_values(spec)
    return [data[c] for c in SPEC_COLUMNS]


def check_dev_euis(conn: psycopg.Connection[Any], specs: Sequence[SensorSpec]) -> None:
    """Raise DevEuiTakenError if a DevEUI of these sensors belongs to another registered sensor."""
    wanted: dict[str, str] = {}
    for spec in specs:
        if spec.dev_eui is None:
            continue
        other = wanted.setdefault(spec.dev_eui, spec.sensor_id)
        if other != spec.sensor_id:
            raise DevEuiTakenError(f"dev_eui {spec.dev_eui} is given to both {other!r} and {spec.sensor_id!r}",
                              dev_eui=spec.dev_eui, sensor_id=other)  # fmt: skip
    if not wanted:
        return
    rows = conn.execute("SELECT dev_eui, sensor_id FROM sensors WHERE dev_eui = ANY(%s)", (list(wanted),)).fetchall()
    for dev_eui, owner in rows:
        if wanted[dev_eui] != owner:
            raise DevEuiTakenError(
                f"dev_eui {dev_eui} belongs to sensor {owner!r}, not {wanted[dev_eui]!r}",
                dev_eui=dev_eui,
                sensor_id=owner,
            )


def insert_sensor(conn: psycopg.Connection[Any], spec: SensorSpec) -> SensorRecord:
    """Register a sensor. Raises psycopg.errors.UniqueViolation if the id or the DevEUI is taken."""
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
    """Insert or update many sensors (bulk import); returns how many were written.

    Raises DevEuiTakenError, writing nothing, when a DevEUI belongs to a sensor of another id.
    """
    specs = list(specs)
    check_dev_euis(conn, specs)
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
    "rejected_drops", "lorawan_frames",
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
    rows = conn.execute(f"SELECT {REGISTRY_COLUMNS} FROM sensors").fetchall()
    return {r[0]: registry_entry(r) for r in rows}

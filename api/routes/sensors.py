"""The sensor registry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query, status
from psycopg.rows import dict_row
from pydantic import BaseModel

from api.deps import ConnDep, ReadAccess, SensorsWriteAccess
from api.pagination import decode_cursor, encode_cursor
from api.problems import ProblemError
from livinglab.sensors import SensorSpec
from livinglab.storage._db import CHANNEL_REGISTRY
from livinglab.storage.registry import SPEC_COLUMNS

router = APIRouter(prefix="/v1/sensors", tags=["sensors"])


class SensorCreate(SensorSpec):
    """A sensor to register."""


class SensorPublic(SensorSpec):
    created_at: datetime
    updated_at: datetime


class SensorsPublic(BaseModel):
    items: list[SensorPublic]
    next_cursor: str | None


def _public(row: dict[str, Any]) -> SensorPublic:
    data = {k: row[k] for k in SPEC_COLUMNS if row[k] is not None}
    return SensorPublic.model_validate({**data, "created_at": row["created_at"], "updated_at": row["updated_at"]})


@router.get("", summary="List sensors", dependencies=[ReadAccess])
async def list_sensors(
    conn: ConnDep,
    city: str | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> SensorsPublic:
    after = decode_cursor(cursor, 1)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM sensors WHERE (%(city)s::text IS NULL OR city = %(city)s)"
            " AND (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(after)s::text IS NULL OR sensor_id > %(after)s)"
            " ORDER BY sensor_id LIMIT %(limit)s",
            {"city": city, "kind": kind, "after": after[0] if after else None, "limit": limit + 1},
        )
        rows = await cur.fetchall()
    items = [_public(r) for r in rows[:limit]]
    next_cursor = encode_cursor([items[-1].sensor_id]) if len(rows) > limit else None
    return SensorsPublic(items=items, next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a sensor", dependencies=[SensorsWriteAccess])
async def create_sensor(conn: ConnDep, sensor: SensorCreate) -> SensorPublic:
    data = sensor.model_dump(mode="json")
    cols = ", ".join(SPEC_COLUMNS)
    placeholders = ", ".join(f"%({c})s" for c in SPEC_COLUMNS)
    try:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"INSERT INTO sensors ({cols}) VALUES ({placeholders}) RETURNING *", data)
            row = await cur.fetchone()
            await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, sensor.sensor_id))
        await conn.commit()
    except psycopg.errors.UniqueViolation:
        await conn.rollback()
        raise ProblemError(409, f"sensor {sensor.sensor_id!r} already exists") from None
    assert row is not None
    return _public(row)


@router.get("/{sensor_id}", summary="One sensor", dependencies=[ReadAccess])
async def get_sensor(conn: ConnDep, sensor_id: str) -> SensorPublic:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM sensors WHERE sensor_id = %s", (sensor_id,))
        row = await cur.fetchone()
    if row is None:
        raise ProblemError(404, f"no sensor {sensor_id!r}")
    return _public(row)

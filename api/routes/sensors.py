"""The sensor registry: list, register, read, replace and delete sensors.

Every change NOTIFYs `livinglab_registry` in its transaction, so ingesters reload the registry at once (a sensor
created here is accepted within a second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Query, Response, status
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from api.access import ReadAccessDep, WriteAccessDep, city_filter
from api.deps import ConnDep, SettingsDep, extend_deadline
from api.pagination import encode_cursor
from api.params import PageDep
from api.problems import ProblemError
from api.routes.common import CityQuery, DistrictQuery, SensorIdPath
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page, UtcDatetime, problem_doc
from livinglab.domain import Kind
from livinglab.sensors import Identifier, SensorSpec
from livinglab.storage._db import CHANNEL_REGISTRY
from livinglab.storage.registry import SENSOR_DATA_TABLES, SPEC_COLUMNS, is_dev_eui_conflict, spec_values

router = APIRouter(prefix="/v1/sensors", tags=["sensors"], responses=COMMON_RESPONSES)


class SensorCreate(SensorSpec):
    """A sensor to register. Traffic counters need `road_type`, `lanes`, `road_function` and `city_population`."""


class SensorPublic(SensorSpec):
    """A registered sensor."""

    created_at: UtcDatetime
    updated_at: UtcDatetime


# The replacement body of PUT: every SensorSpec field but the id, which the path gives (an id in the body is
# accepted when it matches, so a GET response can be edited and sent back).
if TYPE_CHECKING:
    _SensorUpdateFields = BaseModel
else:
    _SensorUpdateFields = create_model(
        "_SensorUpdateFields",
        __config__=ConfigDict(extra="forbid"),
        **{name: (info.annotation, info) for name, info in SensorSpec.model_fields.items() if name != "sensor_id"},
    )


class SensorUpdate(_SensorUpdateFields):
    """The new attributes of a sensor (a full replacement; defaults apply to omitted fields)."""

    model_config = ConfigDict(extra="forbid", title="SensorUpdate")

    sensor_id: Identifier | None = Field(default=None, description="Optional; must match the path when given.")
    created_at: UtcDatetime | None = Field(default=None, description="Ignored (accepted so a GET body can be sent).")
    updated_at: UtcDatetime | None = Field(default=None, description="Ignored (accepted so a GET body can be sent).")


class SensorsPublic(Page[SensorPublic]):
    """A page of sensors, ordered by id."""


def _public(row: dict[str, Any]) -> SensorPublic:
    data = {k: row[k] for k in SPEC_COLUMNS if row[k] is not None}
    return SensorPublic.model_validate({**data, "created_at": row["created_at"], "updated_at": row["updated_at"]})


def _values(spec: SensorSpec) -> dict[str, Any]:
    return spec_values(spec)


def _taken(exc: psycopg.errors.UniqueViolation, spec: SensorSpec) -> ProblemError:
    if is_dev_eui_conflict(exc):
        return ProblemError(409, f"dev_eui {spec.dev_eui} belongs to another sensor")
    return ProblemError(409, f"sensor {spec.sensor_id!r} already exists")


@router.get("", summary="List sensors")
async def list_sensors(
    access: ReadAccessDep,
    conn: ConnDep,
    page: PageDep,
    city: CityQuery = None,
    district: DistrictQuery = None,
    kind: Annotated[Kind | None, Query(description="Only air stations or traffic counters.")] = None,
) -> SensorsPublic:
    """Registered sensors, ordered by `sensor_id`."""
    after = page.after(1)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT * FROM sensors WHERE {city_filter('city')}"
            " AND (%(district)s::text IS NULL OR district = %(district)s)"
            " AND (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(after)s::text IS NULL OR sensor_id > %(after)s)"
            " ORDER BY sensor_id LIMIT %(limit)s",
            {
                "cities": access.cities_param(city),
                "district": district,
                "kind": kind.value if kind else None,
                "after": str(after[0]) if after else None,
                "limit": page.limit + 1,
            },
        )
        rows = await cur.fetchall()
    items = [_public(r) for r in rows[: page.limit]]
    next_cursor = encode_cursor([items[-1].sensor_id]) if len(rows) > page.limit else None
    return SensorsPublic(items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a sensor",
    responses={409: problem_doc("A sensor with this id, or with this dev_eui, exists.")},
)
async def create_sensor(
    access: WriteAccessDep, conn: ConnDep, sensor: SensorCreate, response: Response
) -> SensorPublic:
    """Register a sensor; its readings are accepted within a second. Needs scope `sensors:write` (and, for a key
    limited to cities, one of its cities: 403 otherwise)."""
    access.check_writable(sensor.city)
    query = sql.SQL("INSERT INTO sensors ({cols}) VALUES ({vals}) RETURNING *").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, SPEC_COLUMNS)),
        vals=sql.SQL(", ").join(sql.Placeholder(c) for c in SPEC_COLUMNS),
    )
    try:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, _values(sensor))
            row = await cur.fetchone()
            await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, sensor.sensor_id))
    except psycopg.errors.UniqueViolation as exc:
        raise _taken(exc, sensor) from None
    assert row is not None
    response.headers["Location"] = f"/v1/sensors/{sensor.sensor_id}"
    return _public(row)


@router.get("/{sensor_id}", summary="One sensor", responses=NOT_FOUND)
async def get_sensor(access: ReadAccessDep, conn: ConnDep, sensor_id: SensorIdPath) -> SensorPublic:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM sensors WHERE sensor_id = %s", (sensor_id,))
        row = await cur.fetchone()
    if row is None or not access.sees(row["city"]):
        raise access.not_found(f"no sensor {sensor_id!r}")
    return _public(row)


@router.put(
    "/{sensor_id}",
    summary="Replace a sensor's attributes",
    responses={**NOT_FOUND, 409: problem_doc("The kind of a sensor cannot change; the dev_eui is another's.")},
)
async def replace_sensor(
    access: WriteAccessDep, conn: ConnDep, sensor_id: SensorIdPath, update: Annotated[SensorUpdate, Body()]
) -> SensorPublic:
    """Replace every attribute of a sensor (traffic road attributes are validated as on registration).

    The kind cannot change: delete the sensor and register it again. Needs scope `sensors:write`; a key limited to
    cities may move a sensor only between its cities.
    """
    if update.sensor_id is not None and update.sensor_id != sensor_id:
        raise ProblemError(422, f"the body's sensor_id {update.sensor_id!r} differs from the path's {sensor_id!r}")
    fields = update.model_dump(exclude_unset=True, exclude={"sensor_id", "created_at", "updated_at"})
    try:
        spec = SensorSpec.model_validate({**fields, "sensor_id": sensor_id})
    except ValidationError as exc:
        errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise ProblemError(422, "the sensor's attributes do not validate", errors=errors) from None
    columns = [c for c in SPEC_COLUMNS if c != "sensor_id"]
    query = sql.SQL("UPDATE sensors SET {set}, updated_at = now() WHERE sensor_id = %(sensor_id)s RETURNING *").format(
        set=sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns)
    )
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT kind, city FROM sensors WHERE sensor_id = %s FOR UPDATE", (sensor_id,))
        existing = await cur.fetchone()
        if existing is None or not access.sees(existing["city"]):
            raise access.not_found(f"no sensor {sensor_id!r}")
        if existing["kind"] != spec.kind.value:
            raise ProblemError(
                409, f"sensor {sensor_id!r} is a {existing['kind']} sensor; delete it and register it again"
            )
        access.check_writable(spec.city)
        try:
            await cur.execute(query, _values(spec))
        except psycopg.errors.UniqueViolation as exc:
            raise _taken(exc, spec) from None
        row = await cur.fetchone()
        await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, sensor_id))
    assert row is not None
    return _public(row)


@router.delete(
    "/{sensor_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a sensor and its data",
    responses=NOT_FOUND,
)
async def delete_sensor(
    access: WriteAccessDep, conn: ConnDep, settings: SettingsDep, sensor_id: SensorIdPath
) -> Response:
    """Delete a sensor and every row stored for it (readings, aggregates, indices, counters).

    Its readings are rejected as `unknown_sensor` from then on. Needs scope `sensors:write`.
    """
    async with conn.transaction():
        # Deleting a long history takes longer than the per-query timeout that protects the read paths.
        await conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(settings.delete_timeout_ms)))
        extend_deadline(conn, settings.delete_timeout_ms / 1000)
        cur = await conn.execute(
            f"DELETE FROM sensors WHERE sensor_id = %(sensor_id)s AND {city_filter('city')} RETURNING sensor_key",
            {"sensor_id": sensor_id, "cities": access.cities_param()},
        )
        row = await cur.fetchone()
        if row is None:
            raise access.not_found(f"no sensor {sensor_id!r}")
        for table in SENSOR_DATA_TABLES:
            await conn.execute(sql.SQL("DELETE FROM {} WHERE sensor_key = %s").format(sql.Identifier(table)), (row[0],))
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REGISTRY, sensor_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Helpers shared by the routes modules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from api.pagination import encode_cursor
from api.params import PageRequest
from api.problems import ProblemError
from livinglab.domain import IDENTIFIER_PATTERN, QUANTITIES, Kind, Quantity

SensorIdPath = Annotated[str, Path(description="The sensor's id.", pattern=rf"^{IDENTIFIER_PATTERN}$")]
CityQuery = Annotated[str | None, Query(max_length=64, description="Only sensors of this city.")]
DistrictQuery = Annotated[str | None, Query(max_length=100, description="Only sensors of this district.")]
QuantityQuery = Annotated[
    str | None, Query(max_length=32, description=f"Only this quantity ({', '.join(QUANTITIES)}).")
]


async def sensor_key(conn: AsyncConnection[Any], sensor_id: str) -> int:
    """The internal key of a sensor; 404 when there is none."""
    cur = await conn.execute("SELECT sensor_key FROM sensors WHERE sensor_id = %s", (sensor_id,))
    row = await cur.fetchone()
    if row is None:
        raise ProblemError(404, f"no sensor {sensor_id!r}")
    return int(row[0])


def quantity_of(name: str | None) -> Quantity | None:
    """The quantity named in a query; 400 when the name is unknown."""
    if name is None:
        return None
    quantity = QUANTITIES.get(name)
    if quantity is None:
        raise ProblemError(400, f"unknown quantity {name!r} (known: {', '.join(QUANTITIES)})")
    return quantity


def quantity_time_after(page: PageRequest) -> tuple[int, datetime | None]:
    """The (quantity code, time) after which a page ordered by both starts; (-1, None) on the first page."""
    after = page.after(2)
    if after is None:
        return -1, None
    try:
        return int(str(after[0])), datetime.fromisoformat(str(after[1]))
    except ValueError:
        raise ProblemError(400, "the cursor is not valid") from None


def quantity_time_cursor(rows: Sequence[Sequence[Any]], limit: int) -> str | None:
    """The cursor after row `limit - 1` of rows fetched with `LIMIT limit + 1` (None when no row is left)."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor([int(last[0]), last[1].isoformat()])


async def latest_per_sensor(
    conn: AsyncConnection[Any],
    *,
    table: str,
    time_column: str,
    columns: Sequence[str],
    kind: Kind,
    at: datetime,
    city: str | None,
    district: str | None,
    page: PageRequest,
) -> tuple[list[dict[str, Any]], str | None]:
    """Per sensor of `kind`, its row of `table` with the latest `time_column` at or before `at`.

    One index probe per sensor (the tables' keys are `(sensor_key, time)`), a page of sensors at a time, ordered
    by sensor_id. Sensors with no such row are left out.
    """
    after = page.after(1)
    query = sql.SQL(
        "SELECT s.sensor_id, s.city, s.district, {cols} FROM sensors s CROSS JOIN LATERAL ("
        " SELECT {inner} FROM {table} t WHERE t.sensor_key = s.sensor_key AND t.{time} <= %(at)s"
        " ORDER BY t.{time} DESC LIMIT 1) i"
        " WHERE s.kind = %(kind)s AND (%(city)s::text IS NULL OR s.city = %(city)s)"
        " AND (%(district)s::text IS NULL OR s.district = %(district)s)"
        " AND (%(after)s::text IS NULL OR s.sensor_id > %(after)s)"
        " ORDER BY s.sensor_id LIMIT %(limit)s"
    ).format(
        cols=sql.SQL(", ").join(sql.Identifier("i", c) for c in columns),
        inner=sql.SQL(", ").join(sql.Identifier("t", c) for c in columns),
        table=sql.Identifier(table),
        time=sql.Identifier(time_column),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query,
            {
                "at": at,
                "kind": kind.value,
                "city": city,
                "district": district,
                "after": str(after[0]) if after else None,
                "limit": page.limit + 1,
            },
        )
        rows = await cur.fetchall()
    next_cursor = encode_cursor([rows[page.limit - 1]["sensor_id"]]) if len(rows) > page.limit else None
    return rows[: page.limit], next_cursor

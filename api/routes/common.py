"""Helpers shared by the routes modules."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from psycopg import AsyncConnection, sql
from starlette.responses import Response

from api.access import Access, city_filter
from api.jsonpage import PageSource, page_query
from api.pagination import encode_cursor
from api.params import PageRequest, utc_instant
from api.problems import ProblemError
from livinglab.domain import IDENTIFIER_PATTERN, QUANTITIES, Kind, Quantity
from livinglab.precision import sql_round_field

SensorIdPath = Annotated[str, Path(description="The sensor's id.", pattern=rf"^{IDENTIFIER_PATTERN}$")]
CityQuery = Annotated[str | None, Query(max_length=64, description="Only sensors of this city.")]
DistrictQuery = Annotated[str | None, Query(max_length=100, description="Only sensors of this district.")]
QuantityQuery = Annotated[
    str | None, Query(max_length=32, description=f"Only this quantity ({', '.join(QUANTITIES)}).")
]


async def sensor_key(conn: AsyncConnection[Any], access: Access, sensor_id: str) -> int:
    """The internal key of a sensor; 404 when there is none or it is in a city `access` does not see."""
    cur = await conn.execute("SELECT sensor_key, city FROM sensors WHERE sensor_id = %s", (sensor_id,))
    row = await cur.fetchone()
    if row is None or not access.sees(row[1]):
        raise access.not_found(f"no sensor {sensor_id!r}")
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
        code, ts = int(str(after[0])), datetime.fromisoformat(str(after[1]))
    except ValueError:
        raise ProblemError(400, "the cursor is not valid") from None
    return code, utc_instant("the cursor's time", ts)


def quantity_time_cursor(rows: Sequence[Sequence[Any]], limit: int) -> str | None:
    """The cursor after row `limit - 1` of rows fetched with `LIMIT limit + 1` (None when no row is left)."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor([int(last[0]), last[1].isoformat()])


@functools.cache
def _latest_query(table: str, time_column: str, columns: tuple[str, ...]) -> str:
    fields: list[sql.Composable] = []
    for name in ("sensor_id", "city", "district"):
        fields += [sql.Literal(name), sql.Identifier("s", name)]
    for name in columns:
        column = sql.Identifier("i", name)
        # Times in ISO 8601; figures at the precision their inputs carry (livinglab.precision).
        value = sql.SQL("livinglab_iso({})").format(column) if name == time_column else sql_round_field(name, column)
        fields += [sql.Literal(name), value]
    rows = sql.SQL(
        "SELECT row_number() OVER (ORDER BY s.sensor_id) AS i, json_build_object({fields}) AS item,"
        " json_build_array(s.sensor_id) AS ckey FROM sensors s CROSS JOIN LATERAL ("
        " SELECT {inner} FROM {table} t WHERE t.sensor_key = s.sensor_key AND t.{time} <= %(at)s"
        " ORDER BY t.{time} DESC LIMIT 1) i"
        " WHERE s.kind = %(kind)s AND {cities}"
        " AND (%(district)s::text IS NULL OR s.district = %(district)s)"
        " AND (%(after)s::text IS NULL OR s.sensor_id > %(after)s)"
        " ORDER BY s.sensor_id LIMIT %(_fetch)s"
    ).format(
        fields=sql.SQL(", ").join(fields),
        cities=sql.SQL(city_filter("s.city")),
        inner=sql.SQL(", ").join(sql.Identifier("t", c) for c in columns),
        table=sql.Identifier(table),
        time=sql.Identifier(time_column),
    )
    return page_query(rows)


async def latest_per_sensor(
    source: PageSource,
    access: Access,
    *,
    table: str,
    time_column: str,
    columns: tuple[str, ...],
    kind: Kind,
    at: datetime,
    city: str | None,
    district: str | None,
    page: PageRequest,
) -> Response:
    """Per sensor of `kind` in the cities `access` sees (narrowed by `city`), its row of `table` with the latest
    `time_column` at or before `at`, as a JSON page.

    One index probe per sensor (the tables' keys are `(sensor_key, time)`), a page of sensors at a time, ordered
    by sensor_id. Sensors with no such row are left out. Items hold `sensor_id`, `city`, `district` and `columns`.
    """
    after = page.after(1)
    params = {
        "at": at,
        "kind": kind.value,
        "cities": access.cities_param(city),
        "district": district,
        "after": str(after[0]) if after else None,
    }
    return await source.page(_latest_query(table, time_column, columns), params, page.limit)

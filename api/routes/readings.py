"""Raw readings of one sensor: the one endpoint that reads the `readings` table, always a page at a time."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from pydantic import BaseModel

from api.access import ReadAccessDep
from api.deps import ConnDep, SettingsDep
from api.params import PageDep, TimeRangeDep
from api.routes.common import (
    QuantityQuery,
    SensorIdPath,
    quantity_of,
    quantity_time_after,
    quantity_time_cursor,
    sensor_key,
)
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page, UtcDatetime
from livinglab.domain import QUANTITIES_BY_CODE

router = APIRouter(prefix="/v1/sensors", tags=["readings"], responses=COMMON_RESPONSES)


class ReadingPublic(BaseModel):
    """One stored reading, in its quantity's canonical unit."""

    ts: UtcDatetime
    quantity: str
    value: float


class ReadingsPublic(Page[ReadingPublic]):
    """A page of readings, ordered by quantity and time."""


@router.get("/{sensor_id}/readings", summary="Raw readings", responses=NOT_FOUND)
async def list_readings(
    access: ReadAccessDep,
    conn: ConnDep,
    settings: SettingsDep,
    sensor_id: SensorIdPath,
    span: TimeRangeDep,
    page: PageDep,
    quantity: QuantityQuery = None,
) -> ReadingsPublic:
    """Readings with `start <= ts < end` (default: the last 24 hours), ordered by quantity code and time.

    The range may span at most `LIVINGLAB_MAX_READINGS_RANGE_DAYS` days (default 31); use aggregates for more.
    """
    span.check_span(timedelta(days=settings.max_readings_range_days))
    wanted = quantity_of(quantity)
    key = await sensor_key(conn, access, sensor_id)
    after_q, after_ts = quantity_time_after(page)
    cur = await conn.execute(
        "SELECT quantity, ts, value FROM readings"
        " WHERE sensor_key = %(key)s AND (%(q)s::int2 IS NULL OR quantity = %(q)s)"
        " AND ts >= %(start)s AND ts < %(end)s"
        " AND (%(ats)s::timestamptz IS NULL OR (quantity, ts) > (%(aq)s, %(ats)s))"
        " ORDER BY quantity, ts LIMIT %(limit)s",
        {
            "key": key,
            "q": wanted.code if wanted else None,
            "start": span.start,
            "end": span.end,
            "aq": after_q,
            "ats": after_ts,
            "limit": page.limit + 1,
        },
    )
    rows = await cur.fetchall()
    items = [ReadingPublic(ts=r[1], quantity=QUANTITIES_BY_CODE[r[0]].name, value=r[2]) for r in rows[: page.limit]]
    next_cursor = quantity_time_cursor(rows, page.limit)
    return ReadingsPublic(items=items, next_cursor=next_cursor)

"""Windowed aggregates of one sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import ConnDep, ReadAccess, SettingsDep
from api.pagination import decode_cursor, encode_cursor
from api.problems import ProblemError
from livinglab.domain import QUANTITIES, QUANTITIES_BY_CODE, Window

router = APIRouter(prefix="/v1/sensors", tags=["aggregates"])


class AggregatePublic(BaseModel):
    quantity: str
    window_start: datetime
    count: int
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    completeness: float | None
    final: bool


class AggregatesPublic(BaseModel):
    items: list[AggregatePublic]
    next_cursor: str | None


@router.get("/{sensor_id}/aggregates", summary="Windowed aggregates", dependencies=[ReadAccess])
async def list_aggregates(
    conn: ConnDep,
    settings: SettingsDep,
    sensor_id: str,
    window: Annotated[Window, Query(description="Window width: 1m, 1h or 1d.")],
    quantity: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> AggregatesPublic:
    """Aggregates ordered by quantity and window start, from `start` (default: 24 hours ago) to `end` (now)."""
    now = datetime.now(UTC)
    end = end or now
    start = start or end - timedelta(hours=24)
    if start.tzinfo is None or end.tzinfo is None:
        raise ProblemError(400, "start and end need a UTC offset")
    if quantity is not None and quantity not in QUANTITIES:
        raise ProblemError(400, f"unknown quantity {quantity!r}")
    cur = await conn.execute("SELECT sensor_key FROM sensors WHERE sensor_id = %s", (sensor_id,))
    sensor = await cur.fetchone()
    if sensor is None:
        raise ProblemError(404, f"no sensor {sensor_id!r}")
    after = decode_cursor(cursor, 2)
    after_q, after_ts = (int(after[0]), datetime.fromisoformat(after[1])) if after else (-1, start)
    code = QUANTITIES[quantity].code if quantity else None
    cur = await conn.execute(
        f"SELECT quantity, window_start, count, mean, min, max, p50, p95, completeness FROM {window.table}"
        " WHERE sensor_key = %(key)s AND (%(q)s::int2 IS NULL OR quantity = %(q)s)"
        " AND window_start >= %(start)s AND window_start < %(end)s"
        " AND (quantity, window_start) > (%(aq)s, %(ats)s)"
        " ORDER BY quantity, window_start LIMIT %(limit)s",
        {
            "key": sensor[0],
            "q": code,
            "start": start,
            "end": end,
            "aq": after_q,
            "ats": after_ts,
            "limit": limit + 1,
        },
    )
    rows = await cur.fetchall()
    lateness = timedelta(seconds=settings.allowed_lateness_s)
    items = [
        AggregatePublic(
            quantity=QUANTITIES_BY_CODE[r[0]].name,
            window_start=r[1],
            count=r[2],
            mean=r[3],
            min=r[4],
            max=r[5],
            p50=r[6],
            p95=r[7],
            completeness=r[8],
            final=r[1] + window.width + lateness <= now,
        )
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([int(last[0]), last[1].isoformat()])
    return AggregatesPublic(items=items, next_cursor=next_cursor)

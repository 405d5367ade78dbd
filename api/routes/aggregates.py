"""Windowed aggregates of one sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import ConnDep, ReadAccess, SettingsDep
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
from livinglab.domain import QUANTITIES_BY_CODE, Window

router = APIRouter(prefix="/v1/sensors", tags=["aggregates"], responses=COMMON_RESPONSES)


class AggregatePublic(BaseModel):
    """Statistics of one quantity over one window `[window_start, window_start + width)`."""

    quantity: str
    window_start: UtcDatetime
    count: int = Field(description="Readings in the window.")
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None = Field(description="Exact median.")
    p95: float | None = Field(description="Exact 95th percentile (linear interpolation).")
    completeness: float | None = Field(description="Readings received / readings the sensor's interval implies.")
    final: bool = Field(description="False until the window's end plus the allowed lateness has passed.")


class AggregatesPublic(Page[AggregatePublic]):
    """A page of aggregates, ordered by quantity and window start."""


@router.get("/{sensor_id}/aggregates", summary="Windowed aggregates", dependencies=[ReadAccess], responses=NOT_FOUND)
async def list_aggregates(
    conn: ConnDep,
    settings: SettingsDep,
    sensor_id: SensorIdPath,
    window: Annotated[Window, Query(description="Window width: 1m, 1h or 1d.")],
    span: TimeRangeDep,
    page: PageDep,
    quantity: QuantityQuery = None,
) -> AggregatesPublic:
    """Aggregates with `start <= window_start < end` (default: the last 24 hours), ordered by quantity and window.

    Served as soon as computed; `final` turns true once the window's end plus the allowed lateness has passed.
    1-minute windows may span at most `LIVINGLAB_MAX_READINGS_RANGE_DAYS` days.
    """
    if window is Window.MINUTE:
        span.check_span(timedelta(days=settings.max_readings_range_days))
    wanted = quantity_of(quantity)
    key = await sensor_key(conn, sensor_id)
    after_q, after_ts = quantity_time_after(page)
    cur = await conn.execute(
        f"SELECT quantity, window_start, count, mean, min, max, p50, p95, completeness FROM {window.table}"
        " WHERE sensor_key = %(key)s AND (%(q)s::int2 IS NULL OR quantity = %(q)s)"
        " AND window_start >= %(start)s AND window_start < %(end)s"
        " AND (%(ats)s::timestamptz IS NULL OR (quantity, window_start) > (%(aq)s, %(ats)s))"
        " ORDER BY quantity, window_start LIMIT %(limit)s",
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
    now = datetime.now(UTC)
    final_before = now - window.width - timedelta(seconds=settings.allowed_lateness_s)
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
            final=r[1] <= final_before,
        )
        for r in rows[: page.limit]
    ]
    next_cursor = quantity_time_cursor(rows, page.limit)
    return AggregatesPublic(items=items, next_cursor=next_cursor)

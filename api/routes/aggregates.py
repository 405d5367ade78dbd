"""Windowed aggregates of one sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg import AsyncConnection, sql
from pydantic import BaseModel, Field
from starlette.responses import Response

from api.access import ReadAccessDep, city_filter
from api.deps import SettingsDep
from api.jsonpage import PageSourceDep, json_page, page_query
from api.params import PageDep, TimeRangeDep
from api.routes.common import (
    QuantityQuery,
    SensorIdPath,
    quantity_of,
    quantity_time_after,
    sensor_key,
)
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page, UtcDatetime
from livinglab.domain import Window
from livinglab.precision import sql_round_field

router = APIRouter(prefix="/v1/sensors", tags=["aggregates"], responses=COMMON_RESPONSES)


class AggregatePublic(BaseModel):
    """Statistics of one quantity over one window `[window_start, window_start + width)`. `mean`, `p50` and `p95`
    carry one decimal more than the quantity's readings, `min` and `max` are readings as stored (docs/metrics.md,
    "Precision of served figures")."""

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


def _served(field: str) -> sql.Composable:
    """A column as served: statistics and completeness at their precision (livinglab.precision); `min` and `max`
    are readings, served as stored."""
    return sql_round_field(field, sql.Identifier("a", field), quantity_code=sql.Identifier("a", "quantity"))


def _query(window: Window) -> str:
    return page_query(
        sql.SQL(
            "SELECT row_number() OVER (ORDER BY a.quantity, a.window_start) AS i,"
            " json_build_object('quantity', q.name, 'window_start', livinglab_iso(a.window_start), 'count', a.count,"
            " 'mean', {mean}, 'min', a.min, 'max', a.max, 'p50', {p50}, 'p95', {p95},"
            " 'completeness', {completeness}, 'final', a.window_start <= %(final_before)s) AS item,"
            " json_build_array(a.quantity, livinglab_iso(a.window_start)) AS ckey"
            " FROM {table} a JOIN quantities q ON q.code = a.quantity"
            " WHERE a.sensor_key = (SELECT sensor_key FROM sensors WHERE sensor_id = %(sensor_id)s AND {cities})"
            " AND (%(q)s::int2 IS NULL OR a.quantity = %(q)s)"
            " AND a.window_start >= %(start)s AND a.window_start < %(end)s"
            " AND (%(ats)s::timestamptz IS NULL OR (a.quantity, a.window_start) > (%(aq)s, %(ats)s))"
            " ORDER BY a.quantity, a.window_start LIMIT %(_fetch)s"
        ).format(
            table=sql.Identifier(window.table),
            cities=sql.SQL(city_filter("city")),
            **{field: _served(field) for field in ("mean", "p50", "p95", "completeness")},
        )
    )


_QUERIES = {window: _query(window) for window in Window}


@router.get(
    "/{sensor_id}/aggregates",
    summary="Windowed aggregates",
    responses=NOT_FOUND,
    response_model=AggregatesPublic,
)
async def list_aggregates(
    access: ReadAccessDep,
    source: PageSourceDep,
    settings: SettingsDep,
    sensor_id: SensorIdPath,
    window: Annotated[Window, Query(description="Window width: 1m, 1h or 1d.")],
    span: TimeRangeDep,
    page: PageDep,
    quantity: QuantityQuery = None,
) -> Response:
    """Aggregates with `start <= window_start < end` (default: the last 24 hours), ordered by quantity and window.

    Served as soon as computed; `final` turns true once the window's end plus the allowed lateness has passed.
    1-minute windows may span at most `LIVINGLAB_MAX_READINGS_RANGE_DAYS` days.
    """
    if window is Window.MINUTE:
        span.check_span(timedelta(days=settings.max_readings_range_days))
    wanted = quantity_of(quantity)
    after_q, after_ts = quantity_time_after(page)
    final_before = datetime.now(UTC) - window.width - timedelta(seconds=settings.allowed_lateness_s)
    params = {
        "sensor_id": sensor_id,
        "cities": access.cities_param(),
        "q": wanted.code if wanted else None,
        "start": span.start,
        "end": span.end,
        "aq": after_q,
        "ats": after_ts,
        "final_before": final_before,
    }

    async def load(conn: AsyncConnection[Any]) -> Response:
        # The sensor is looked up inside the page's query; only an empty page asks whether it exists (404).
        return await json_page(
            conn, _QUERIES[window], params, page.limit, if_empty=lambda: sensor_key(conn, access, sensor_id)
        )

    return await source.get(load)

"""Service levels per district: how often air, traffic and data met their targets over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import ConnDep, ReadAccess, SettingsDep
from api.pagination import encode_cursor
from api.params import PageDep, TimeRangeDep
from api.routes.common import DistrictQuery
from api.schemas import COMMON_RESPONSES, Page, UtcDatetime
from api.settings import ApiSettings

router = APIRouter(prefix="/v1", tags=["service levels"], responses=COMMON_RESPONSES)

Service = Literal["air", "traffic", "data"]

#: The indicator each service is measured by (CONTRACT.md section 4).
INDICATORS: dict[str, str] = {
    "air": "ispu_at_most_100_share",
    "traffic": "los_target_met_share",
    "data": "completeness",
}


def targets(settings: ApiSettings) -> dict[str, float]:
    return {"air": settings.target_air, "traffic": settings.target_traffic, "data": settings.target_data}


class ServiceLevelPublic(BaseModel):
    """One district's level of one service over `[start, end)`."""

    city: str
    district: str
    service: Service
    indicator: str = Field(description="ispu_at_most_100_share, los_target_met_share or completeness.")
    target: float = Field(description="The configured target share.")
    achieved: float | None = Field(description="numerator / denominator; null when nothing was measured.")
    compliant: bool | None = Field(description="achieved >= target; null when nothing was measured.")
    numerator: float = Field(description="Station-hours with ISPU <= 100, sensor-hours meeting LOS, or readings.")
    denominator: float = Field(description="Valid station-hours, sensor-hours, or expected readings.")
    start: UtcDatetime
    end: UtcDatetime


class ServiceLevelsPublic(Page[ServiceLevelPublic]):
    """Per district and service, ordered by city, district and service."""


def _day_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """`[first, last)`: the UTC days lying wholly inside `[start, end)` (first == last when there is none)."""
    first = _day_floor(start)
    if first < start:
        first += timedelta(days=1)
    last = _day_floor(end)
    return (first, last) if first < last else (end, end)


@router.get("/service-levels", summary="Service levels per district", dependencies=[ReadAccess])
async def list_service_levels(
    conn: ConnDep,
    settings: SettingsDep,
    span: TimeRangeDep,
    page: PageDep,
    city: Annotated[str | None, Query(max_length=64, description="Only districts of this city.")] = None,
    district: DistrictQuery = None,
    service: Annotated[Service | None, Query(description="Only this service.")] = None,
) -> ServiceLevelsPublic:
    """Per district and service, the share achieved over the hours starting in `[start, end)` (default: the last
    24 hours) against its target.

    Whole UTC days come from the daily rollups and only the partial days at the edges from the hourly tallies, so
    a 30-day query reads about 30 + 48 rows per district and service.
    """
    first_day, last_day = whole_days(span.start, span.end)
    after = page.after(3)
    after_key = tuple(str(a) for a in after) if after else None
    cur = await conn.execute(
        "SELECT city, district, service, sum(numerator), sum(denominator) FROM ("
        " SELECT city, district, service, numerator, denominator FROM service_daily"
        "  WHERE period_start >= %(d0)s AND period_start < %(d1)s"
        "  AND (%(city)s::text IS NULL OR city = %(city)s)"
        " UNION ALL"
        " SELECT city, district, service, numerator, denominator FROM service_hourly"
        "  WHERE ((period_start >= %(start)s AND period_start < %(d0)s)"
        "   OR (period_start >= %(d1)s AND period_start < %(end)s))"
        "  AND (%(city)s::text IS NULL OR city = %(city)s)"
        ") u WHERE (%(district)s::text IS NULL OR district = %(district)s)"
        " AND (%(service)s::text IS NULL OR service = %(service)s)"
        " AND (%(a_city)s::text IS NULL OR (city, district, service) > (%(a_city)s, %(a_district)s, %(a_service)s))"
        " GROUP BY city, district, service ORDER BY city, district, service LIMIT %(limit)s",
        {
            "d0": first_day,
            "d1": last_day,
            "start": span.start,
            "end": span.end,
            "city": city,
            "district": district,
            "service": service,
            "a_city": after_key[0] if after_key else None,
            "a_district": after_key[1] if after_key else None,
            "a_service": after_key[2] if after_key else None,
            "limit": page.limit + 1,
        },
    )
    rows = await cur.fetchall()
    goal = targets(settings)
    items = []
    for row_city, row_district, row_service, numerator, denominator in rows[: page.limit]:
        achieved = numerator / denominator if denominator else None
        target = goal[row_service]
        items.append(
            ServiceLevelPublic(
                city=row_city,
                district=row_district,
                service=row_service,
                indicator=INDICATORS[row_service],
                target=target,
                achieved=achieved,
                compliant=None if achieved is None else achieved >= target,
                numerator=numerator,
                denominator=denominator,
                start=span.start,
                end=span.end,
            )
        )
    next_cursor = None
    if len(rows) > page.limit:
        last = rows[page.limit - 1]
        next_cursor = encode_cursor([last[0], last[1], last[2]])
    return ServiceLevelsPublic(items=items, next_cursor=next_cursor)

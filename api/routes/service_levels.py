"""Service levels per district: how often air, traffic and data met their targets over a time range."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from psycopg import sql
from pydantic import BaseModel, Field
from starlette.responses import Response

from api.access import ReadAccessDep
from api.deps import SettingsDep
from api.jsonpage import PageSourceDep, page_query
from api.params import PageDep, TimeRangeDep
from api.routes.common import DistrictQuery
from api.schemas import COMMON_RESPONSES, Page, UtcDatetime
from api.settings import ApiSettings
from livinglab.precision import sql_round_field
from livinglab.storage.cities import ServiceTargets

router = APIRouter(prefix="/v1", tags=["service levels"], responses=COMMON_RESPONSES)

Service = Literal["air", "traffic", "data"]

#: The indicator each service is measured by (CONTRACT.md section 4).
INDICATORS: dict[str, str] = {
    "air": "ispu_at_most_100_share",
    "traffic": "los_target_met_share",
    "data": "completeness",
}


def default_targets(settings: ApiSettings) -> ServiceTargets:
    """The configured targets, in force for every city that has not set its own (`PUT /v1/cities/{city}`)."""
    return ServiceTargets(air=settings.target_air, traffic=settings.target_traffic, data=settings.target_data)


class ServiceLevelPublic(BaseModel):
    """One district's level of one service over `[start, end)`."""

    city: str
    district: str
    service: Service
    indicator: str = Field(description="ispu_at_most_100_share, los_target_met_share or completeness.")
    target: float = Field(description="The city's target share (`PUT /v1/cities/{city}`), else the configured default.")
    achieved: float | None = Field(description="numerator / denominator; null when nothing was measured.")
    compliant: bool | None = Field(description="achieved >= target; null when nothing was measured.")
    numerator: float = Field(description="Station-hours with ISPU <= 100, sensor-hours meeting LOS, or readings.")
    denominator: float = Field(description="Valid station-hours, sensor-hours, or expected readings.")
    start: UtcDatetime
    end: UtcDatetime


class ServiceLevelsPublic(Page[ServiceLevelPublic]):
    """Per district and service, ordered by city, district and service."""


def _conditions(*conditions: str | None) -> sql.Composable:
    """`AND` of the given conditions (None: left out), or TRUE."""
    given = [sql.SQL(c) for c in conditions if c is not None]
    return sql.SQL(" AND ").join(given) if given else sql.SQL("TRUE")


@functools.cache
def _query(*, cities: bool, district: bool, service: bool, after: bool) -> str:
    """The page query with only the filters a request gives.

    A filter left out is absent from the SQL rather than written `(%(x)s IS NULL OR ...)`: a query without such
    conditions has a generic plan as good as the plan made for its parameters, so it is prepared once per
    connection and not planned again on every request (with the conditions the generic plan cost more than planning
    each time did). Sixteen texts at most, each prepared on a connection after its fifth use.
    """
    in_cities = "city = ANY(%(cities)s)" if cities else None
    return page_query(
        sql.SQL(
            "WITH u AS ("
            " SELECT city, district, service, numerator, denominator FROM service_daily"
            "  WHERE period_start >= %(d0)s AND period_start < %(d1)s AND {rows}"
            " UNION ALL"
            # The two edges as two index range scans (an OR of ranges makes a bitmap scan of both).
            " SELECT city, district, service, numerator, denominator FROM service_hourly"
            "  WHERE period_start >= %(start)s AND period_start < %(d0)s AND {rows}"
            " UNION ALL"
            " SELECT city, district, service, numerator, denominator FROM service_hourly"
            "  WHERE period_start >= %(d1)s AND period_start < %(end)s AND {rows}"
            "), g AS ("
            " SELECT city, district, service, sum(numerator) AS n, sum(denominator) AS d FROM u WHERE {groups}"
            " GROUP BY city, district, service"
            ") SELECT row_number() OVER (ORDER BY g.city, g.district, g.service) AS i,"
            " json_build_object('city', g.city, 'district', g.district, 'service', g.service,"
            " 'indicator', goal.indicator, 'target', t.target,"
            " 'achieved', {achieved},"
            " 'compliant', CASE WHEN g.d > 0 THEN g.n / g.d >= t.target END,"
            " 'numerator', g.n, 'denominator', g.d,"
            " 'start', livinglab_iso(%(start)s), 'end', livinglab_iso(%(end)s)) AS item,"
            " json_build_array(g.city, g.district, g.service) AS ckey"
            " FROM g JOIN (VALUES {goals}) goal (service, indicator, target) ON goal.service = g.service"
            # A city's own target where it set one (livinglab.storage.cities), else the configured default.
            " LEFT JOIN service_targets st ON st.city = g.city AND st.service = g.service"
            " CROSS JOIN LATERAL (SELECT coalesce(st.target, goal.target) AS target) t"
            " ORDER BY g.city, g.district, g.service LIMIT %(_fetch)s"
        ).format(
            # Served at its precision; `compliant` compares the unrounded share with the target.
            achieved=sql_round_field("achieved", sql.SQL("CASE WHEN g.d > 0 THEN g.n / g.d END")),
            rows=_conditions(in_cities),
            groups=_conditions(
                "district = %(district)s" if district else None,
                "service = %(service)s" if service else None,
                "(city, district, service) > (%(a_city)s, %(a_district)s, %(a_service)s)" if after else None,
            ),
            goals=sql.SQL(", ").join(
                sql.SQL("({}, {}, {}::float8)").format(sql.Literal(s), sql.Literal(i), sql.Placeholder(f"target_{s}"))
                for s, i in INDICATORS.items()
            ),
        )
    )


def _day_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """`[first, last)`: the UTC days lying wholly inside `[start, end)` (first == last when there is none)."""
    first = _day_floor(start)
    if first < start:
        first += timedelta(days=1)
    last = _day_floor(end)
    return (first, last) if first < last else (end, end)


@router.get(
    "/service-levels",
    summary="Service levels per district",
    response_model=ServiceLevelsPublic,
)
async def list_service_levels(
    access: ReadAccessDep,
    source: PageSourceDep,
    settings: SettingsDep,
    span: TimeRangeDep,
    page: PageDep,
    city: Annotated[str | None, Query(max_length=64, description="Only districts of this city.")] = None,
    district: DistrictQuery = None,
    service: Annotated[Service | None, Query(description="Only this service.")] = None,
) -> Response:
    """Per district and service, the share achieved over the hours starting in `[start, end)` (default: the last
    24 hours) against its target: the city's own (`PUT /v1/cities/{city}`), else the configured default.

    Whole UTC days come from the daily rollups and only the partial days at the edges from the hourly tallies, so
    a 30-day query reads about 30 + 48 rows per district and service.
    """
    first_day, last_day = whole_days(span.start, span.end)
    after = page.after(3)
    cities = access.cities_param(city)
    params: dict[str, Any] = {"d0": first_day, "d1": last_day, "start": span.start, "end": span.end}
    if cities is not None:
        params["cities"] = cities
    if district is not None:
        params["district"] = district
    if service is not None:
        params["service"] = service
    if after:
        params["a_city"], params["a_district"], params["a_service"] = (str(a) for a in after)
    params.update({f"target_{s}": t for s, t in default_targets(settings).as_dict().items()})
    query = _query(
        cities=cities is not None, district=district is not None, service=service is not None, after=bool(after)
    )
    return await source.page(query, params, page.limit)

"""Cities: the ones a key sees (for choosing one, and fitting a map to it), and their service-level targets.

A city exists wherever a sensor is registered in it or a target was set for it; a key limited to cities sees
exactly its own, registered or not yet. Targets (CONTRACT.md section 8) are stored by `livinglab.storage.cities`;
`/v1/service-levels` applies them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.access import Access, AdminAccessDep, ReadAccessDep
from api.deps import ConnDep, SettingsDep
from api.pagination import encode_cursor
from api.params import PageDep
from api.routes.service_levels import default_targets
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page
from livinglab.domain import IDENTIFIER_PATTERN
from livinglab.storage.cities import (
    DELETE_CITY_TARGETS,
    INSERT_CITY_TARGET,
    SELECT_CITY_TARGETS,
    SERVICES,
    ServiceTargets,
)

router = APIRouter(prefix="/v1/cities", tags=["cities"], responses=COMMON_RESPONSES)

CityPath = Annotated[str, Path(description="The city, as in topics and sensors.", pattern=rf"^{IDENTIFIER_PATTERN}$")]
_Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class SensorCounts(BaseModel):
    air: int = Field(description="Air quality stations.")
    traffic: int = Field(description="Traffic counters.")


class CitySummaryPublic(BaseModel):
    """A city the key sees."""

    city: str
    sensors: SensorCounts
    districts: list[str] = Field(description="Districts with a registered sensor, by name.")
    bbox: list[float] | None = Field(
        description="[west, south, east, north] of its sensors' positions (GeoJSON order); null without sensors."
    )


class CitiesPublic(Page[CitySummaryPublic]):
    """The cities the key sees, by name."""


class TargetsPublic(BaseModel):
    air: float = Field(description="Share of valid station-hours with ISPU <= 100 (`ispu_at_most_100_share`).")
    traffic: float = Field(description="Share of sensor-hours meeting the LOS target (`los_target_met_share`).")
    data: float = Field(description="Received / expected readings (`completeness`).")


class TargetsUpdate(BaseModel):
    """Targets to set; a service left out goes back to the configured default."""

    model_config = ConfigDict(extra="forbid")

    air: _Share | None = None
    traffic: _Share | None = None
    data: _Share | None = None


class CityPublic(BaseModel):
    """A city's service-level targets."""

    city: str
    targets: TargetsPublic = Field(description="The targets in force: the city's own, else the defaults.")
    defaults: TargetsPublic = Field(description="The configured targets (LIVINGLAB_TARGET_AIR, ...).")


class CityUpdate(BaseModel):
    """The body of `PUT /v1/cities/{city}`."""

    model_config = ConfigDict(extra="forbid")

    targets: TargetsUpdate


_LIST = (
    "WITH names AS ("
    " SELECT DISTINCT city FROM sensors WHERE %(cities)s::text[] IS NULL"
    " UNION SELECT city FROM service_targets WHERE %(cities)s::text[] IS NULL"
    " UNION SELECT unnest(%(cities)s::text[]))"
    " SELECT n.city, count(s.sensor_key) FILTER (WHERE s.kind = 'air'),"
    " count(s.sensor_key) FILTER (WHERE s.kind = 'traffic'),"
    " coalesce(array_agg(DISTINCT s.district ORDER BY s.district) FILTER (WHERE s.district IS NOT NULL), '{}'),"
    " min(s.lon), min(s.lat), max(s.lon), max(s.lat)"
    " FROM names n LEFT JOIN sensors s ON s.city = n.city"
    " WHERE (%(after)s::text IS NULL OR n.city > %(after)s)"
    " GROUP BY n.city ORDER BY n.city LIMIT %(limit)s"
)


@router.get("", summary="Cities this key sees")
async def list_cities(access: ReadAccessDep, conn: ConnDep, page: PageDep) -> CitiesPublic:
    """The cities this key sees (for a key without cities: every city with a registered sensor or a target),
    with their sensor counts, districts and the box around their sensors, for choosing a city and fitting a map
    to it."""
    params = {"cities": access.cities_param(), "after": page.after_text(), "limit": page.limit + 1}
    cur = await conn.execute(_LIST, params)
    rows = await cur.fetchall()
    items = [
        CitySummaryPublic(
            city=city,
            sensors=SensorCounts(air=air, traffic=traffic),
            districts=list(districts),
            bbox=[west, south, east, north] if west is not None else None,
        )
        for city, air, traffic, districts, west, south, east, north in rows[: page.limit]
    ]
    next_cursor = encode_cursor([items[-1].city]) if len(rows) > page.limit else None
    return CitiesPublic(items=items, next_cursor=next_cursor)


def _city_public(city: str, defaults: ServiceTargets, rows: list[tuple[str, float]]) -> CityPublic:
    targets = defaults.merged(dict(rows))
    return CityPublic(
        city=city,
        targets=TargetsPublic(**targets.as_dict()),
        defaults=TargetsPublic(**defaults.as_dict()),
    )


def _check_city(access: Access, city: str) -> None:
    access.check_visible(city, f"no city {city!r} for this key")


@router.get("/{city}", summary="A city's service-level targets", responses=NOT_FOUND)
async def get_city(access: AdminAccessDep, conn: ConnDep, settings: SettingsDep, city: CityPath) -> CityPublic:
    """The targets `/v1/service-levels` holds the city's districts to. Needs scope `admin`."""
    _check_city(access, city)
    cur = await conn.execute(SELECT_CITY_TARGETS, (city,))
    return _city_public(city, default_targets(settings), await cur.fetchall())


@router.put("/{city}", summary="Set a city's service-level targets", responses=NOT_FOUND)
async def put_city(
    access: AdminAccessDep, conn: ConnDep, settings: SettingsDep, city: CityPath, body: CityUpdate
) -> CityPublic:
    """Replace the city's targets: each service given is set, each left out goes back to the configured default.
    `/v1/service-levels` applies them to its next answers (cached answers live at most `LIVINGLAB_RESPONSE_CACHE_S`).
    Needs scope `admin`."""
    _check_city(access, city)
    given = body.targets.model_dump(exclude_none=True)
    async with conn.transaction():
        await conn.execute(DELETE_CITY_TARGETS, (city,))
        for service in SERVICES:
            if service in given:
                await conn.execute(INSERT_CITY_TARGET, (city, service, given[service]))
    return _city_public(city, default_targets(settings), list(given.items()))

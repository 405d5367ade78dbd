"""Air quality indices per station: Indonesian ISPU and US EPA AQI (NowCast), as of a point in time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from api.access import ReadAccessDep
from api.jsonpage import PageSourceDep
from api.params import AtDep, PageDep
from api.routes.common import CityQuery, DistrictQuery, latest_per_sensor
from api.schemas import COMMON_RESPONSES, Page, UtcDatetime
from livinglab.domain import Kind

router = APIRouter(prefix="/v1/air", tags=["air quality"], responses=COMMON_RESPONSES)


class IspuPublic(BaseModel):
    """A station's ISPU over the 24 hours `[window_end - 24h, window_end)`."""

    sensor_id: str
    city: str
    district: str
    ispu: int | None = Field(description="The largest sub-index (null when no parameter has 18 valid hours).")
    category: str | None = Field(description="Baik, Sedang, Tidak Sehat, Sangat Tidak Sehat or Berbahaya.")
    colour_hex: str | None = Field(description="The category's colour, `#rrggbb`.")
    critical_parameter: str | None = Field(description="The parameter with the largest sub-index.")
    sub_indices: dict[str, Any] = Field(description="Sub-index per parameter.")
    window_end: UtcDatetime = Field(description="End of the last hour the value includes (an hour boundary).")
    hours_valid: int = Field(description="Valid hours of the critical parameter among the 24 (at least 18).")


class IspuListPublic(Page[IspuPublic]):
    """Per station, the latest ISPU labelled at or before `at`, ordered by sensor_id."""


class AqiPublic(BaseModel):
    """A station's US AQI for the hour ending at `hour`, from NowCast PM2.5/PM10 and the other pollutants."""

    sensor_id: str
    city: str
    district: str
    aqi: int | None = Field(description="The largest pollutant AQI (null when none could be computed).")
    category: str | None = Field(description="EPA category, such as Good or Unhealthy for Sensitive Groups.")
    dominant_pollutant: str | None
    nowcast: dict[str, Any] = Field(description="NowCast concentration per pollutant.")
    sub_indices: dict[str, Any] = Field(description="AQI per pollutant.")
    hour: UtcDatetime = Field(description="End of the last hour the value includes (an hour boundary).")


class AqiListPublic(Page[AqiPublic]):
    """Per station, the latest AQI labelled at or before `at`, ordered by sensor_id."""


_ISPU_COLUMNS = (
    "ispu", "category", "colour_hex", "critical_parameter", "sub_indices", "window_end", "hours_valid",
)  # fmt: skip
_AQI_COLUMNS = ("aqi", "category", "dominant_pollutant", "nowcast", "sub_indices", "hour")


@router.get("/ispu", summary="ISPU per station", response_model=IspuListPublic)
async def list_ispu(
    access: ReadAccessDep,
    source: PageSourceDep,
    at: AtDep,
    page: PageDep,
    city: CityQuery = None,
    district: DistrictQuery = None,
) -> Response:
    """Per air station, the latest ISPU labelled at or before `at` (default: now).

    A value labelled H covers the readings of `[H - 24h, H)`; it is read from the hourly index table, never
    computed from raw readings on request.
    """
    return await latest_per_sensor(
        source,
        access,
        table="ispu_hourly",
        time_column="window_end",
        columns=_ISPU_COLUMNS,
        kind=Kind.AIR,
        at=at,
        city=city,
        district=district,
        page=page,
    )


@router.get("/aqi", summary="US AQI per station", response_model=AqiListPublic)
async def list_aqi(
    access: ReadAccessDep,
    source: PageSourceDep,
    at: AtDep,
    page: PageDep,
    city: CityQuery = None,
    district: DistrictQuery = None,
) -> Response:
    """Per air station, the latest US AQI labelled at or before `at` (default: now), labelled by hour end."""
    return await latest_per_sensor(
        source,
        access,
        table="aqi_hourly",
        time_column="hour",
        columns=_AQI_COLUMNS,
        kind=Kind.AIR,
        at=at,
        city=city,
        district=district,
        page=page,
    )

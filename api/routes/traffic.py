"""Road traffic per counter: PKJI flow, capacity, degree of saturation and level of service."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from api.access import ReadAccessDep
from api.jsonpage import PageSourceDep
from api.params import AtDep, PageDep
from api.routes.common import CityQuery, DistrictQuery, latest_per_sensor
from api.schemas import COMMON_RESPONSES, Page, UtcDatetime
from livinglab.domain import Kind

router = APIRouter(prefix="/v1/traffic", tags=["traffic"], responses=COMMON_RESPONSES)


class SegmentPublic(BaseModel):
    """One counter's road segment over the UTC hour starting at `hour`. Figures are rounded to the decimals their
    inputs carry (docs/metrics.md, "Precision of served figures")."""

    sensor_id: str
    city: str
    district: str
    hour: UtcDatetime = Field(description="Start of the hour.")
    flow_veh_h: float = Field(description="Vehicles counted in the hour (sm + kr + kb).")
    flow_pcu_h: float = Field(description="Flow in passenger-car units per hour (PKJI ekr factors).")
    capacity_pcu_h: float = Field(description="C0 x FCLJ x FCPA x FCHS x FCUK, or the sensor's override.")
    degree_of_saturation: float = Field(description="flow_pcu_h / capacity_pcu_h, to 2 decimals (as LOS reads it).")
    los: str = Field(description="Level of service A-F.")
    los_target: str = Field(description="The worst acceptable level of service for the road's function.")
    los_met: bool = Field(description="Whether `los` is at least as good as `los_target`.")
    mean_speed_kmh: float | None
    completeness: float | None = Field(description="Count intervals received / expected in the hour.")


class SegmentsPublic(Page[SegmentPublic]):
    """Per traffic counter, its latest hour starting at or before `at`, ordered by sensor_id."""


_COLUMNS = (
    "hour", "flow_veh_h", "flow_pcu_h", "capacity_pcu_h", "degree_of_saturation", "los", "los_target", "los_met",
    "mean_speed_kmh", "completeness",
)  # fmt: skip


@router.get(
    "/segments",
    summary="Level of service per road segment",
    response_model=SegmentsPublic,
)
async def list_segments(
    access: ReadAccessDep,
    source: PageSourceDep,
    at: AtDep,
    page: PageDep,
    city: CityQuery = None,
    district: DistrictQuery = None,
) -> Response:
    """Per traffic counter, the latest hourly PKJI figures labelled (by hour start) at or before `at`."""
    return await latest_per_sensor(
        source,
        access,
        table="traffic_hourly",
        time_column="hour",
        columns=_COLUMNS,
        kind=Kind.TRAFFIC,
        at=at,
        city=city,
        district=district,
        page=page,
    )
